// Entry point of the FESeq attention plugin (TensorBoard loads it in an iframe whose
// <base> is the plugin's data prefix, so the routes below are relative).
import {drawHeatmap, formatValue} from './heatmap.js';

const STYLE = `
  body { margin: 0; font-family: Roboto, "Helvetica Neue", Arial, sans-serif; color: #333; }
  .fa-root { padding: 16px 24px; }
  .fa-controls { display: flex; flex-wrap: wrap; gap: 12px 20px; align-items: center;
    margin-bottom: 8px; font-size: 13px; }
  .fa-controls label { display: flex; gap: 6px; align-items: center; }
  .fa-controls select { font-size: 13px; max-width: 320px; }
  .fa-controls input[type=range] { width: 220px; }
  .fa-step { min-width: 110px; font-variant-numeric: tabular-nums; }
  .fa-description { font-size: 13px; color: #555; margin: 4px 0 10px; max-width: 900px; }
  .fa-readout { font-size: 13px; min-height: 18px; margin: 6px 0; font-variant-numeric: tabular-nums; }
  .fa-axes { font-size: 12px; color: #666; margin-top: 4px; }
  .fa-message { font-size: 14px; color: #555; max-width: 720px; line-height: 1.5; }
  .fa-error { color: #b00020; }
  .fa-tooltip { position: fixed; pointer-events: none; background: rgba(33, 33, 33, 0.92);
    color: #fff; padding: 4px 8px; border-radius: 3px; font-size: 12px; display: none;
    white-space: nowrap; z-index: 10; }
  button.fa-reload { font-size: 13px; }
`;

const EMPTY_MESSAGE =
  'No FESeq attention summaries in this log directory. They are written by ' +
  'feseq_tf.callbacks.AttentionSummaries, which `python -m feseq_tf.train` adds by ' +
  'default (under <output_dir>/logs/attention).';

async function getJson(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(query ? `${path}?${query}` : path);
  if (!response.ok) {
    throw new Error(`${path}: ${response.status} ${await response.text()}`);
  }
  return response.json();
}

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fillSelect(select, options, keep) {
  select.replaceChildren(...options.map(({value, text}) => {
    const option = make('option', '', text);
    option.value = value;
    return option;
  }));
  if (options.some((o) => o.value === keep)) select.value = keep;
}

/** Builds the dashboard into document.body (called by TensorBoard's plugin entry). */
export async function render() {
  document.head.append(make('style', '', STYLE));
  const root = make('div', 'fa-root');
  const controls = make('div', 'fa-controls');
  const runSelect = make('select', 'fa-run');
  const tagSelect = make('select', 'fa-tag');
  const slider = make('input', 'fa-slider');
  slider.type = 'range';
  slider.min = '0';
  slider.step = '1';
  const stepLabel = make('span', 'fa-step');
  const scaleSelect = make('select', 'fa-scale');
  fillSelect(scaleSelect, [
    {value: 'auto', text: 'min to max of the matrix'},
    {value: 'unit', text: '0 to 1'},
  ]);
  const reload = make('button', 'fa-reload', 'Reload');
  const labelled = (text, node) => {
    const label = make('label', '', text);
    label.append(node);
    return label;
  };
  const stepBox = labelled('Step', slider);
  stepBox.append(stepLabel);
  controls.append(labelled('Run', runSelect), labelled('Tag', tagSelect), stepBox,
    labelled('Colour scale', scaleSelect), reload);
  const description = make('div', 'fa-description');
  const readout = make('div', 'fa-readout');
  const figure = make('div', 'fa-figure');
  const axes = make('div', 'fa-axes');
  const message = make('div', 'fa-message');
  const tooltip = make('div', 'fa-tooltip');
  root.append(controls, description, readout, figure, axes, message);
  document.body.append(root, tooltip);

  const state = {steps: [], tags: [], token: 0};
  const setStatus = (status) => { document.body.dataset.status = status; };

  const showError = (error) => {
    message.replaceChildren(make('span', 'fa-error', String(error.message || error)));
    setStatus('error');
  };

  const onHover = (info) => {
    if (!info) {
      tooltip.style.display = 'none';
      readout.textContent = '';
      return;
    }
    const text = `${info.rowLabel} \u2192 ${info.colLabel}: ${formatValue(info.value)}`;
    readout.textContent = text;
    tooltip.textContent = text;
    tooltip.style.display = 'block';
    tooltip.style.left = `${info.clientX + 14}px`;
    tooltip.style.top = `${info.clientY + 14}px`;
  };

  async function loadMatrix() {
    const token = ++state.token;
    const step = state.steps[Number(slider.value)];
    if (step === undefined) return;
    stepLabel.textContent = `${step.step} (${Number(slider.value) + 1} of ${state.steps.length})`;
    const matrix = await getJson('matrix', {run: runSelect.value, tag: tagSelect.value, step: step.step});
    if (token !== state.token) return;  // a newer request superseded this one
    description.textContent = matrix.description || '';
    onHover(null);  // the cell under the pointer belonged to the previous matrix
    const range = scaleSelect.value === 'unit' ? {min: 0, max: 1} : {};
    const drawn = drawHeatmap(figure, matrix, {
      ...range,
      onHover,
      square: matrix.kind !== 'pooling',
      maxHeight: Math.min(640, Math.max(240, window.innerHeight - 300)),
    });
    axes.textContent = [matrix.row_title && `rows: ${matrix.row_title}`,
      matrix.col_title && `columns: ${matrix.col_title}`].filter(Boolean).join(' \u00b7 ');
    message.textContent = '';
    figure.dataset.run = matrix.run;
    figure.dataset.tag = matrix.tag;
    figure.dataset.step = String(matrix.step);
    setStatus(drawn.drawnCells > 0 ? 'drawn' : 'blank');
  }

  async function loadSteps() {
    state.steps = await getJson('steps', {run: runSelect.value, tag: tagSelect.value});
    slider.max = String(Math.max(0, state.steps.length - 1));
    slider.value = slider.max;  // the latest step
    slider.disabled = state.steps.length < 2;
    await loadMatrix();
  }

  async function loadTags() {
    const keep = tagSelect.value;
    state.tags = await getJson('tags', {run: runSelect.value});
    fillSelect(tagSelect, state.tags.map((t) => ({value: t.tag, text: t.tag})), keep);
    await loadSteps();
  }

  async function loadRuns() {
    setStatus('loading');
    const keep = runSelect.value;
    const runs = await getJson('runs');
    if (!runs.length) {
      figure.replaceChildren();
      message.textContent = EMPTY_MESSAGE;
      setStatus('empty');
      return;
    }
    fillSelect(runSelect, runs.map((r) => ({value: r, text: r})), keep);
    await loadTags();
  }

  const guard = (fn) => () => fn().catch(showError);
  runSelect.addEventListener('change', guard(loadTags));
  tagSelect.addEventListener('change', guard(loadSteps));
  slider.addEventListener('input', guard(loadMatrix));
  scaleSelect.addEventListener('change', guard(loadMatrix));
  reload.addEventListener('click', guard(loadRuns));
  await guard(loadRuns)();
}
