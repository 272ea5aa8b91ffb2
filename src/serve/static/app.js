// The web demo: solve with every encoding side by side, an attention heatmap, and live run progress (SSE).
// Plain browser JavaScript, no build step; every server string is inserted as text, never as HTML.
const $ = (id) => document.getElementById(id);
const form = $('solve-form');
const status = $('status');

function setStatus(text, isError = false) {
  status.textContent = text;
  status.className = isError ? 'error' : '';
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadModels() {
  const res = await fetch('/models');
  const { models } = await res.json();
  const select = $('model');
  const attention = $('attention-model');
  for (const m of models) {
    const label = `${m.name} (${m.task}, seed ${m.seed})`;
    select.append(el('option', { value: m.name }, label));
    attention.append(el('option', { value: m.name }, label));
  }
  if (models.length === 0) setStatus('this run has no trained models yet', true);
}

function renderResults(body) {
  const box = $('results');
  box.replaceChildren();
  for (const r of body.results) {
    const card = el('article', { class: 'result-card', 'data-model': r.model });
    card.append(el('h3', {}, r.model));
    card.append(el('div', { class: 'answer' }, r.answer === '' ? '(no answer)' : r.answer));
    if (r.steps.length > 0) {
      const list = el('ul', { class: 'steps' });
      for (const s of r.steps)
        list.append(el('li', { class: s.correct ? 'step-ok' : 'step-bad' }, `${s.text} ${s.correct ? '✓' : '✗'}`));
      card.append(list);
    }
    // The model's own format (padding, reversal): what it was given and what it wrote, before reading it back.
    card.append(el('pre', {}, `${r.prompt ?? ''}${r.prediction}`));
    card.append(el('div', { class: 'latency' }, `${r.latencyMs.toFixed(1)} ms · ${r.generatedTokens} tokens`));
    box.append(card);
  }
  for (const e of body.errors) {
    const card = el('article', { class: 'result-card failed', 'data-model': e.model });
    card.append(el('h3', {}, e.model));
    card.append(el('div', {}, e.error.message));
    box.append(card);
  }
}

function drawHeatmap(view) {
  const canvas = $('heatmap');
  const ctx = canvas.getContext('2d');
  const n = view.tokens.length;
  const margin = 44;
  const cell = Math.max(6, Math.floor((Math.min(canvas.width, canvas.height) - margin) / Math.max(1, n)));
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = '11px sans-serif';
  ctx.fillStyle = '#222';
  const label = (t) => (t === ' ' ? '␣' : t === '\n' ? '⏎' : t);
  for (let q = 0; q < n; q++) {
    // Labels only while they fit; long sequences show the grid alone.
    if (cell >= 10) {
      ctx.fillStyle = '#222';
      ctx.fillText(label(view.tokens[q]), 4, margin + q * cell + cell * 0.7);
      ctx.fillText(label(view.tokens[q]), margin + q * cell + 2, margin - 8);
    }
    for (let k = 0; k <= q; k++) {
      // sqrt stretches the small weights of long rows so their structure stays visible.
      const w = Math.sqrt(Math.max(0, Math.min(1, view.weights[q][k])));
      // Light to dark blue: darker is more attention.
      const shade = Math.round(255 - 200 * w);
      ctx.fillStyle = `rgb(${shade}, ${shade + Math.round(30 * (1 - w))}, 255)`;
      ctx.fillRect(margin + k * cell, margin + q * cell, cell - 1, cell - 1);
    }
  }
}

async function showAttention(problem) {
  const model = $('attention-model').value;
  if (!model || !problem) return;
  const res = await fetch('/attention', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ problem, model_type: model }),
  });
  if (res.ok) drawHeatmap(await res.json());
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const problem = $('problem').value;
  const model = $('model').value;
  setStatus('solving…');
  $('solve').disabled = true;
  try {
    const res = await fetch('/solve', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ problem, model_type: model }),
    });
    const body = await res.json();
    if (!res.ok) {
      setStatus(body.error ? body.error.message : `error ${res.status}`, true);
      return;
    }
    renderResults(body);
    setStatus(`${body.results.length} answer(s) in ${body.totalLatencyMs.toFixed(0)} ms`);
    await showAttention(problem);
  } catch (error) {
    setStatus(String(error), true);
  } finally {
    $('solve').disabled = false;
  }
});

$('attention-model').addEventListener('change', () => showAttention($('problem').value));

function renderProgress(p) {
  const body = $('progress').querySelector('tbody');
  body.replaceChildren();
  for (const j of p.jobs) {
    const tr = el('tr');
    for (const v of [
      j.jobId,
      j.encoding,
      j.task,
      String(j.seed),
      j.state,
      `${j.step}/${j.totalSteps}`,
      j.loss === undefined ? '' : j.loss.toFixed(4),
    ])
      tr.append(el('td', {}, v));
    body.append(tr);
  }
  $('progress-state').textContent = p.finished ? '(finished)' : '(live)';
}

const events = new EventSource('/events');
events.addEventListener('progress', (e) => renderProgress(JSON.parse(e.data)));

loadModels().catch((error) => setStatus(String(error), true));
