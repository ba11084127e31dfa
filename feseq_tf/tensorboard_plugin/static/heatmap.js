// Labelled heatmap of one matrix: canvas cells, DOM axis labels, a colour scale and
// the value under the pointer. No dependencies, no build step.

// Viridis (perceptually uniform, colour-blind safe), 9 stops from 0 to 1.
const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];
const MISSING_COLOUR = 'rgb(200, 200, 200)';
const FONT_FAMILY = 'Roboto, "Helvetica Neue", Arial, sans-serif';
const LEGEND_WIDTH = 14;

/** The colour of t in [0, 1] as [r, g, b]. */
export function colourAt(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}

/** Formats a value for labels and the read-out (4 significant digits). */
export function formatValue(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return 'n/a';
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e4)) return v.toExponential(3);
  return Number(v.toPrecision(4)).toString();
}

function el(tag, style, text) {
  const node = document.createElement(tag);
  if (style) node.style.cssText = style;
  if (text !== undefined) node.textContent = text;
  return node;
}

function textWidth(labels, fontSize) {
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = `${fontSize}px ${FONT_FAMILY}`;
  return Math.ceil(Math.max(0, ...labels.map((s) => ctx.measureText(s).width)));
}

/**
 * Draws `matrix` into `container` (replacing its content).
 *
 * matrix: {values: number[][] (null = missing), row_labels, col_labels,
 *          row_title, col_title}.
 * options: {min, max (colour range; default the matrix's own), maxWidth, maxHeight
 *           (pixels for the cells), square (square cells), onHover(info | null)}.
 * Returns {canvas, drawnCells, rows, cols}. The canvas carries data-rows, data-cols
 * and data-drawn-cells (cells whose centre pixel was painted, read back from the
 * canvas) so that tests can check what was drawn.
 */
export function drawHeatmap(container, matrix, options = {}) {
  const values = matrix.values;
  const rows = values.length;
  const cols = rows ? values[0].length : 0;
  const finite = values.flat().filter((v) => v !== null && Number.isFinite(v));
  let lo = options.min ?? Math.min(...finite);
  let hi = options.max ?? Math.max(...finite);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  const span = hi > lo ? hi - lo : 1;

  const maxWidth = Math.max(320, options.maxWidth || container.clientWidth || 900);
  const probeFont = 12;
  const rowLabelWidth = textWidth(matrix.row_labels, probeFont) + 10;
  const legendSpace = LEGEND_WIDTH + 70;
  const maxHeight = Math.max(200, options.maxHeight || 560);
  let cellW = Math.max(8, Math.min(34, Math.floor((maxWidth - rowLabelWidth - legendSpace) / cols)));
  const cellH = Math.max(6, Math.min(cellW, Math.floor(maxHeight / rows)));
  if (options.square) cellW = cellH;
  const rowFont = Math.max(7, Math.min(12, cellH - 2));
  const colFont = Math.max(7, Math.min(12, cellW - 2));
  const left = textWidth(matrix.row_labels, rowFont) + 10;
  const top = textWidth(matrix.col_labels, colFont) + 10;
  const width = cols * cellW;
  const height = rows * cellH;

  container.replaceChildren();
  const figure = el('div', `position:relative;width:${left + width + legendSpace}px;` +
    `height:${top + height + 4}px;font-family:${FONT_FAMILY};color:#333;`);
  figure.className = 'fa-heatmap';

  const ratio = window.devicePixelRatio || 1;
  const canvas = el('canvas', `position:absolute;left:${left}px;top:${top}px;` +
    `width:${width}px;height:${height}px;cursor:crosshair;`);
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.className = 'fa-cells';
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const v = values[i][j];
      if (v === null || !Number.isFinite(v)) {
        ctx.fillStyle = MISSING_COLOUR;
      } else {
        const [r, g, b] = colourAt((v - lo) / span);
        ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
      }
      ctx.fillRect(j * cellW, i * cellH, cellW, cellH);
    }
  }
  const overlay = el('canvas', `position:absolute;left:${left}px;top:${top}px;` +
    `width:${width}px;height:${height}px;pointer-events:none;`);
  overlay.width = canvas.width;
  overlay.height = canvas.height;
  figure.append(canvas, overlay);

  matrix.row_labels.forEach((label, i) => {
    const d = el('div', `position:absolute;left:0;top:${top + i * cellH}px;width:${left - 6}px;` +
      `height:${cellH}px;line-height:${cellH}px;font-size:${rowFont}px;text-align:right;` +
      'white-space:nowrap;overflow:hidden;', label);
    d.className = 'fa-row-label';
    figure.append(d);
  });
  matrix.col_labels.forEach((label, j) => {
    const d = el('div', `position:absolute;left:${left + j * cellW}px;top:0;width:${cellW}px;` +
      `height:${top - 6}px;line-height:${cellW}px;font-size:${colFont}px;` +
      'writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;' +
      'white-space:nowrap;overflow:hidden;', label);
    d.className = 'fa-col-label';
    figure.append(d);
  });

  // Colour scale: a vertical gradient with the range's ends and middle.
  const legendX = left + width + 16;
  const legend = el('canvas', `position:absolute;left:${legendX}px;top:${top}px;` +
    `width:${LEGEND_WIDTH}px;height:${height}px;border:1px solid #999;`);
  legend.width = LEGEND_WIDTH;
  legend.height = Math.max(1, height);
  legend.className = 'fa-legend';
  const lctx = legend.getContext('2d');
  for (let y = 0; y < legend.height; y++) {
    const [r, g, b] = colourAt(1 - y / Math.max(1, legend.height - 1));
    lctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
    lctx.fillRect(0, y, LEGEND_WIDTH, 1);
  }
  figure.append(legend);
  [[hi, 0], [(lo + hi) / 2, 0.5], [lo, 1]].forEach(([v, at]) => {
    const tick = el('div', `position:absolute;left:${legendX + LEGEND_WIDTH + 6}px;` +
      `top:${top + at * height - 7}px;font-size:11px;line-height:14px;white-space:nowrap;`,
      formatValue(v));
    tick.className = 'fa-legend-tick';
    figure.append(tick);
  });
  container.append(figure);

  // Value under the pointer: outline the cell and report it.
  const octx = overlay.getContext('2d');
  octx.scale(ratio, ratio);
  const hover = (event) => {
    const box = canvas.getBoundingClientRect();
    const j = Math.floor((event.clientX - box.left) / cellW);
    const i = Math.floor((event.clientY - box.top) / cellH);
    octx.clearRect(0, 0, width, height);
    if (i < 0 || j < 0 || i >= rows || j >= cols) {
      options.onHover?.(null);
      return;
    }
    octx.strokeStyle = '#ff3b30';
    octx.lineWidth = 2;
    octx.strokeRect(j * cellW + 1, i * cellH + 1, cellW - 2, cellH - 2);
    options.onHover?.({
      row: i, col: j, value: values[i][j],
      rowLabel: matrix.row_labels[i], colLabel: matrix.col_labels[j],
      clientX: event.clientX, clientY: event.clientY,
    });
  };
  canvas.addEventListener('mousemove', hover);
  canvas.addEventListener('mouseleave', () => {
    octx.clearRect(0, 0, width, height);
    options.onHover?.(null);
  });

  // Read back the centre pixel of every cell: what was really painted.
  let drawnCells = 0;
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const x = Math.floor((j + 0.5) * cellW * ratio);
      const y = Math.floor((i + 0.5) * cellH * ratio);
      const k = 4 * (y * canvas.width + x);
      const [r, g, b, a] = [pixels[k], pixels[k + 1], pixels[k + 2], pixels[k + 3]];
      if (a > 0 && !(r === 255 && g === 255 && b === 255)) drawnCells++;
    }
  }
  canvas.dataset.rows = String(rows);
  canvas.dataset.cols = String(cols);
  canvas.dataset.drawnCells = String(drawnCells);
  canvas.dataset.min = String(lo);
  canvas.dataset.max = String(hi);
  return {canvas, drawnCells, rows, cols};
}
