import * as zmq from 'zeromq';
import { bindServer, connectClient } from '../protocol/zmq-transport.ts';
import { encode } from '../protocol/codec.ts';
const N = 5000;
async function ours() {
  const server = await bindServer({ address: 'tcp://127.0.0.1:0' });
  const client = await connectClient({ address: server.address, routingId: 'rtt' });
  void (async () => { for await (const item of server.inbound()) if (item.kind === 'message' && item.message.type === 'heartbeat') await server.send(item.from, { type: 'heartbeat_ack', seq: item.message.seq, time: Date.now() }); })();
  const replies = client.inbound()[Symbol.asyncIterator]();
  for (let i = 0; i < 200; i++) { await client.send({ type: 'heartbeat', agentId: 'rtt' as never, seq: i, time: Date.now(), state: 'idle' }); await replies.next(); }
  const c0 = process.cpuUsage(); const t0 = performance.now();
  for (let i = 0; i < N; i++) { await client.send({ type: 'heartbeat', agentId: 'rtt' as never, seq: i, time: Date.now(), state: 'idle' }); await replies.next(); }
  const cpu = process.cpuUsage(c0); const wall = performance.now() - t0;
  console.log(`ours: wall ${(wall*1000/N).toFixed(1)} us, cpu ${((cpu.user+cpu.system)/N).toFixed(1)} us (user ${(cpu.user/N).toFixed(1)})`);
  await client.close(); await server.close();
}
async function raw() {
  const router = new zmq.Router({ linger: 0 }); await router.bind('tcp://127.0.0.1:0');
  const dealer = new zmq.Dealer({ linger: 0, routingId: 'rtt' }); dealer.connect(router.lastEndpoint!);
  const req = encode({ type: 'heartbeat', agentId: 'rtt' as never, seq: 1, time: Date.now(), state: 'idle' });
  const rep = encode({ type: 'heartbeat_ack', seq: 1, time: Date.now() });
  void (async () => { for (;;) { let f; try { [f] = await router.receive(); } catch { return; } await router.send([f!, rep]); } })();
  for (let i = 0; i < 200; i++) { await dealer.send(req); await dealer.receive(); }
  const c0 = process.cpuUsage(); const t0 = performance.now();
  for (let i = 0; i < N; i++) { await dealer.send(req); await dealer.receive(); }
  const cpu = process.cpuUsage(c0); const wall = performance.now() - t0;
  console.log(`raw:  wall ${(wall*1000/N).toFixed(1)} us, cpu ${((cpu.user+cpu.system)/N).toFixed(1)} us (user ${(cpu.user/N).toFixed(1)})`);
  dealer.close(); router.close();
}
for (let r = 0; r < 2; r++) { await ours(); await raw(); }
process.exit(0);
