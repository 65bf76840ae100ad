// @ts-check
// A line chart on <canvas>: nice ticks, legend, hover tooltip with exact values,
// drag to zoom on x, double-click to reset. Draws each series as one path, so a
// few thousand points per series redraw within a frame.

import {
  clockLabel,
  durationLabel,
  exact,
  dateTime,
  duration,
  integerTicks,
  logTicks,
  niceTicks,
  readable,
  tickLabel,
  timeTicks,
} from "./format.js";

const MARGIN = { top: 10, right: 14, bottom: 24 };

/**
 * @typedef {object} ChartSeries
 * @property {string} id      the run's prefix
 * @property {string} label   the legend text
 * @property {string} color   CSS colour
 * @property {Float64Array} x sorted by x
 * @property {Float64Array} y NaN where the value is not finite
 * @property {Float64Array} [lo] a band's lower edge at each x (a group's min)
 * @property {Float64Array} [hi] its upper edge (a group's max)
 * @property {number[]} [dash] a line dash (another key on the same chart)
 */

export class LineChart {
  /**
   * @param {HTMLElement} host where the plot and legend go
   * @param {{ xKind?: string, xLabel?: string, height?: number, onZoom?: (range: number[] | null) => void, hidden?: Set<string>, onLegendToggle?: (id: string) => void }} options
   *   `hidden` the ids of series not drawn, which several charts may share; `onLegendToggle` decides what a legend click hides
   */
  constructor(host, options = {}) {
    this.host = host;
    this.xKind = options.xKind ?? "step"; // step | time | relative | field
    this.xLabel = options.xLabel ?? "step";
    this.height = options.height ?? 210;
    this.onZoom = options.onZoom ?? (() => {});
    /** @type {ChartSeries[]} */
    this.series = [];
    this.hidden = options.hidden ?? new Set();
    this.onLegendToggle = options.onLegendToggle ?? ((id) => {
      if (this.hidden.has(id)) this.hidden.delete(id);
      else this.hidden.add(id);
      this.syncHidden();
    });
    this.zoom = null;
    this.logY = false;
    /** @type {{ min?: number, max?: number, clip?: boolean }} fixed y ends, outliers clipped */
    this.yRange = {};
    this.smoothing = 0;
    this.highlight = null;
    this.hover = null;
    this.drag = null;
    this.message = "";
    this.#build();
  }

  #build() {
    this.plot = el("div", "chart-plot");
    this.canvas = el("canvas", "chart-canvas");
    this.canvas.style.height = `${this.height}px`;
    this.tooltip = el("div", "chart-tooltip");
    this.tooltip.hidden = true;
    this.selection = el("div", "chart-selection");
    this.selection.hidden = true;
    this.plot.append(this.canvas, this.selection, this.tooltip);
    this.legend = el("div", "chart-legend");
    this.host.append(this.plot, this.legend);

    this.canvas.addEventListener("mousemove", (e) => this.#onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      if (this.drag) return;
      this.hover = null;
      this.tooltip.hidden = true;
      this.requestDraw();
    });
    this.canvas.addEventListener("mousedown", (e) => this.#onDown(e));
    this.canvas.addEventListener("dblclick", () => this.resetZoom());
    this.resizeObserver = new ResizeObserver(() => this.requestDraw());
    this.resizeObserver.observe(this.plot);
  }

  /** Width of the plotting area in CSS pixels (the number of points worth fetching). */
  get pixelWidth() {
    return Math.max(100, Math.round(this.plot.clientWidth || 600));
  }

  /** @param {ChartSeries[]} series */
  setSeries(series) {
    this.series = series.map(sortByX);
    this.smoothCache = new Map();
    this.#renderLegend();
    this.requestDraw();
  }

  setXKind(kind, label) {
    this.xKind = kind;
    this.xLabel = label;
    this.zoom = null;
    this.requestDraw();
  }

  setZoom(range) {
    this.zoom = range;
    this.requestDraw();
  }

  resetZoom() {
    if (!this.zoom) return;
    this.zoom = null;
    this.requestDraw();
    this.onZoom(null);
  }

  setLogY(on) {
    this.logY = on;
    this.requestDraw();
  }

  /** @param {{ min?: number, max?: number, clip?: boolean }} range */
  setYRange(range) {
    this.yRange = range;
    this.requestDraw();
  }

  setSmoothing(weight) {
    this.smoothing = weight;
    this.smoothCache = new Map();
    this.requestDraw();
  }

  requestDraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  destroy() {
    this.resizeObserver.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  #renderLegend() {
    this.legend.replaceChildren();
    for (const s of this.series) {
      const item = el("button", "legend-item");
      item.type = "button";
      item.dataset.series = s.id;
      item.title = `${s.id}\nclick: hide/show`;
      if (this.hidden.has(s.id)) item.classList.add("off");
      const swatch = el("span", "swatch");
      swatch.style.background = s.color;
      item.append(swatch, text(s.label));
      item.setAttribute("aria-pressed", String(!this.hidden.has(s.id)));
      item.addEventListener("click", () => this.onLegendToggle(s.id));
      item.addEventListener("mouseenter", () => {
        this.highlight = s.id;
        this.requestDraw();
      });
      item.addEventListener("mouseleave", () => {
        this.highlight = null;
        this.requestDraw();
      });
      this.legend.append(item);
    }
  }

  /** Shows in the legend and the plot which series are hidden (after `hidden` changed). */
  syncHidden() {
    for (const item of this.legend.querySelectorAll(".legend-item")) {
      const off = this.hidden.has(item.dataset.series);
      item.classList.toggle("off", off);
      item.setAttribute("aria-pressed", String(!off));
    }
    this.requestDraw();
  }

  #visible() {
    return this.series.filter((s) => !this.hidden.has(s.id) && s.x.length > 0);
  }

  #smoothed(s) {
    if (!(this.smoothing > 0)) return null;
    let cached = this.smoothCache.get(s);
    if (!cached) {
      cached = new Float64Array(s.y.length);
      const w = this.smoothing;
      let last = 0;
      let n = 0;
      for (let i = 0; i < s.y.length; i++) {
        const v = s.y[i];
        if (!Number.isFinite(v)) {
          cached[i] = NaN;
          continue;
        }
        last = last * w + (1 - w) * v;
        n++;
        cached[i] = last / (1 - w ** n);
      }
      this.smoothCache.set(s, cached);
    }
    return cached;
  }

  /** The x and y domains and the transforms, for drawing and for hover. */
  #layout(ctx, width) {
    const visible = this.#visible();
    let x0 = Infinity;
    let x1 = -Infinity;
    for (const s of visible) {
      x0 = Math.min(x0, s.x[0]);
      x1 = Math.max(x1, s.x[s.x.length - 1]);
    }
    if (this.zoom) [x0, x1] = this.zoom;
    if (!Number.isFinite(x0)) [x0, x1] = [0, 1];
    if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];

    let y0 = Infinity;
    let y1 = -Infinity;
    for (const s of visible) {
      const [from, to] = indexRange(s.x, x0, x1);
      for (const ys of s.lo && s.hi ? [s.y, s.lo, s.hi] : [s.y]) {
        for (let i = from; i < to; i++) {
          const v = ys[i];
          if (!Number.isFinite(v) || (this.logY && v <= 0)) continue;
          if (v < y0) y0 = v;
          if (v > y1) y1 = v;
        }
      }
    }
    const empty = !Number.isFinite(y0);
    if (empty) [y0, y1] = this.logY ? [1, 10] : [0, 1];
    else if (this.yRange.clip) [y0, y1] = withoutOutliers(visible, x0, x1, y0, y1, this.logY);
    const fixed = { min: Number.isFinite(this.yRange.min), max: Number.isFinite(this.yRange.max) };
    if (fixed.min) y0 = /** @type {number} */ (this.yRange.min);
    if (fixed.max) y1 = /** @type {number} */ (this.yRange.max);
    if (y0 > y1) [y0, y1] = [y1, y0];
    let ticksY;
    let toY;
    const height = this.height - MARGIN.top - MARGIN.bottom;
    if (this.logY) {
      let l0 = Math.log10(y0);
      let l1 = Math.log10(y1);
      if (l0 === l1) [l0, l1] = [l0 - 0.5, l1 + 0.5];
      const pad = (l1 - l0) * 0.05;
      l0 -= pad;
      l1 += pad;
      ticksY = { step: 0, ticks: logTicks(10 ** l0, 10 ** l1) };
      if (ticksY.ticks.length < 2) ticksY = niceTicks(10 ** l0, 10 ** l1, 4);
      toY = (v) => MARGIN.top + height * (1 - (Math.log10(v) - l0) / (l1 - l0));
    } else {
      if (y0 === y1) {
        const d = Math.abs(y0) * 0.1 || 1;
        [y0, y1] = [y0 - d, y1 + d];
      }
      const pad = (y1 - y0) * 0.06;
      if (!fixed.min) y0 -= pad;
      if (!fixed.max) y1 += pad;
      ticksY = niceTicks(y0, y1, Math.max(2, Math.round(height / 38)));
      toY = (v) => MARGIN.top + height * (1 - (v - y0) / (y1 - y0));
    }
    const labelsY = ticksY.ticks.map((v) => tickLabel(v, ticksY.step || Math.abs(v) / 10 || 1));
    const left = Math.ceil(Math.max(24, ...labelsY.map((l) => ctx.measureText(l).width))) + 10;
    const plotWidth = Math.max(10, width - left - MARGIN.right);
    const toX = (v) => left + ((v - x0) / (x1 - x0)) * plotWidth;
    const fromX = (px) => x0 + ((px - left) / plotWidth) * (x1 - x0);
    const count = Math.max(2, Math.round(plotWidth / 90));
    let ticksX;
    let labelX;
    if (this.xKind === "time") {
      const offset = -new Date(x0 * 1000).getTimezoneOffset() * 60;
      ticksX = timeTicks(x0, x1, count, offset);
      labelX = (v) => clockLabel(v, ticksX.step);
    } else if (this.xKind === "relative") {
      ticksX = timeTicks(x0, x1, count, 0);
      labelX = (v) => durationLabel(v, ticksX.step);
    } else {
      ticksX = this.xKind === "step" ? integerTicks(x0, x1, count) : niceTicks(x0, x1, count);
      labelX = (v) => tickLabel(v, ticksX.step);
    }
    return { visible, empty, x0, x1, left, plotWidth, height, toX, fromX, toY, ticksY, labelsY, ticksX, labelX };
  }

  draw() {
    const width = this.plot.clientWidth;
    if (!width) return;
    const dpr = window.devicePixelRatio || 1;
    const canvas = this.canvas;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(this.height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(this.height * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, this.height);
    const css = getComputedStyle(this.host);
    const color = (name) => css.getPropertyValue(name).trim();
    ctx.font = `11px ${css.fontFamily}`;
    const L = this.#layout(ctx, width);
    this.layoutCache = L;
    const bottom = MARGIN.top + L.height;

    // Grid and axes.
    ctx.lineWidth = 1;
    ctx.strokeStyle = color("--chart-grid");
    ctx.fillStyle = color("--chart-text");
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.beginPath();
    const drawnY = [];
    L.ticksY.ticks.forEach((v, i) => {
      const y = Math.round(L.toY(v)) + 0.5;
      if (y < MARGIN.top - 1 || y > bottom + 1) return;
      drawnY.push(L.labelsY[i]);
      ctx.moveTo(L.left, y);
      ctx.lineTo(L.left + L.plotWidth, y);
      ctx.fillText(L.labelsY[i], L.left - 6, y);
    });
    ctx.stroke();
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.beginPath();
    let lastLabelEnd = -Infinity;
    const drawnX = [];
    for (const v of L.ticksX.ticks) {
      const x = Math.round(L.toX(v)) + 0.5;
      if (x < L.left - 1 || x > L.left + L.plotWidth + 1) continue;
      ctx.moveTo(x, bottom);
      ctx.lineTo(x, bottom + 4);
      const label = L.labelX(v);
      const w = ctx.measureText(label).width;
      if (x - w / 2 > lastLabelEnd + 6) {
        ctx.fillText(label, Math.min(x, width - w / 2 - 1), bottom + 6);
        lastLabelEnd = x + w / 2;
        drawnX.push(label);
      }
    }
    ctx.stroke();
    // The labels drawn on the x axis, for what reads the page rather than the pixels.
    this.canvas.dataset.xTicks = drawnX.join(" | ");
    this.canvas.dataset.yTicks = drawnY.join(" | ");
    ctx.strokeStyle = color("--chart-axis");
    ctx.beginPath();
    ctx.moveTo(L.left, bottom + 0.5);
    ctx.lineTo(L.left + L.plotWidth, bottom + 0.5);
    ctx.stroke();

    if (L.empty) {
      ctx.fillStyle = color("--chart-text");
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.font = `12px ${css.fontFamily}`;
      ctx.fillText(this.message || "No data", L.left + L.plotWidth / 2, MARGIN.top + L.height / 2);
    }

    // Series, clipped to the plot.
    ctx.save();
    ctx.beginPath();
    ctx.rect(L.left, MARGIN.top - 2, L.plotWidth, L.height + 4);
    ctx.clip();
    ctx.lineJoin = "round";
    const focus = this.highlight;
    for (const s of L.visible) {
      const smooth = this.#smoothed(s);
      const dim = focus && focus !== s.id;
      const [from, to] = indexRange(s.x, L.x0, L.x1, 1);
      if (s.lo && s.hi) this.#band(ctx, L, s.x, s.lo, s.hi, from, to, s.color, dim ? 0.05 : 0.18);
      ctx.setLineDash(s.dash ?? []);
      if (smooth) {
        this.#line(ctx, L, s.x, s.y, from, to, s.color, 1, dim ? 0.08 : 0.25);
        this.#line(ctx, L, s.x, smooth, from, to, s.color, focus === s.id ? 2.5 : 1.75, dim ? 0.25 : 1);
      } else {
        this.#line(ctx, L, s.x, s.y, from, to, s.color, focus === s.id ? 2.5 : 1.5, dim ? 0.25 : 1);
      }
      ctx.setLineDash([]);
      if (to - from <= L.plotWidth / 8) this.#dots(ctx, L, s.x, smooth ?? s.y, from, to, s.color, dim ? 0.25 : 1);
    }
    ctx.restore();

    if (this.hover && !this.drag) this.#drawHover(ctx, L, color);
  }

  #line(ctx, L, xs, ys, from, to, strokeStyle, lineWidth, alpha) {
    ctx.globalAlpha = alpha;
    ctx.strokeStyle = strokeStyle;
    ctx.lineWidth = lineWidth;
    ctx.beginPath();
    let pen = false;
    for (let i = from; i < to; i++) {
      const v = ys[i];
      if (!Number.isFinite(v) || (this.logY && v <= 0)) {
        pen = false;
        continue;
      }
      const x = L.toX(xs[i]);
      const y = L.toY(v);
      if (pen) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      pen = true;
    }
    ctx.stroke();
    ctx.globalAlpha = 1;
  }

  /** The area between two edges, e.g. a group's min and max. */
  #band(ctx, L, xs, lo, hi, from, to, fillStyle, alpha) {
    ctx.globalAlpha = alpha;
    ctx.fillStyle = fillStyle;
    ctx.beginPath();
    let started = false;
    for (let i = from; i < to; i++) {
      const v = hi[i];
      if (!Number.isFinite(v)) continue;
      if (started) ctx.lineTo(L.toX(xs[i]), L.toY(v));
      else ctx.moveTo(L.toX(xs[i]), L.toY(v));
      started = true;
    }
    for (let i = to - 1; i >= from; i--) {
      const v = lo[i];
      if (Number.isFinite(v)) ctx.lineTo(L.toX(xs[i]), L.toY(v));
    }
    ctx.closePath();
    if (started) ctx.fill();
    ctx.globalAlpha = 1;
  }

  #dots(ctx, L, xs, ys, from, to, fillStyle, alpha) {
    ctx.globalAlpha = alpha;
    ctx.fillStyle = fillStyle;
    for (let i = from; i < to; i++) {
      const v = ys[i];
      if (!Number.isFinite(v) || (this.logY && v <= 0)) continue;
      ctx.beginPath();
      ctx.arc(L.toX(xs[i]), L.toY(v), 2.2, 0, Math.PI * 2);
      ctx.fill();
    }
    ctx.globalAlpha = 1;
  }

  #nearest(L, px, py) {
    const x = L.fromX(px);
    const rows = [];
    let best = null;
    for (const s of L.visible) {
      const i = nearestIndex(s.x, x);
      if (i < 0) continue;
      const smooth = this.#smoothed(s);
      const shown = smooth ? smooth[i] : s.y[i];
      const outside = outsideSeries(s.x, x, (L.x1 - L.x0) / L.plotWidth);
      const row = { s, i, x: s.x[i], y: s.y[i], smooth: smooth ? smooth[i] : null, shown, outside };
      rows.push(row);
      if (!outside && Number.isFinite(shown) && !(this.logY && shown <= 0)) {
        const d = Math.hypot(L.toX(row.x) - px, L.toY(shown) - py);
        if (!best || d < best.d) best = { d, row };
      }
    }
    return { x, rows, best: best?.row ?? null };
  }

  #drawHover(ctx, L, color) {
    const { px, py } = this.hover;
    if (px < L.left || px > L.left + L.plotWidth) {
      this.tooltip.hidden = true;
      return;
    }
    const { x: hovered, rows, best } = this.#nearest(L, px, py);
    if (!rows.length) {
      this.tooltip.hidden = true;
      return;
    }
    const anchorX = best ? best.x : rows.find((r) => !r.outside)?.x ?? hovered;
    const cx = Math.round(L.toX(anchorX)) + 0.5;
    ctx.strokeStyle = color("--chart-crosshair");
    ctx.lineWidth = 1;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(cx, MARGIN.top);
    ctx.lineTo(cx, MARGIN.top + L.height);
    ctx.stroke();
    ctx.setLineDash([]);
    for (const r of rows) {
      if (r.outside || !Number.isFinite(r.shown) || (this.logY && r.shown <= 0)) continue;
      ctx.beginPath();
      ctx.arc(L.toX(r.x), L.toY(r.shown), r === best ? 4.5 : 3.5, 0, Math.PI * 2);
      ctx.fillStyle = r.s.color;
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = color("--panel");
      ctx.stroke();
    }
    this.#renderTooltip(rows, best, anchorX);
    const tip = this.tooltip;
    const plotRect = this.plot.getBoundingClientRect();
    const w = tip.offsetWidth;
    let left = px + 14;
    if (left + w > plotRect.width - 4) left = px - 14 - w;
    tip.style.left = `${Math.max(0, left)}px`;
    tip.style.top = `${Math.max(0, Math.min(py - 10, this.height - tip.offsetHeight))}px`;
  }

  #formatX(x) {
    if (this.xKind === "time") return dateTime(x);
    if (this.xKind === "relative") return duration(x);
    return exact(x);
  }

  #renderTooltip(rows, best, anchorX) {
    const tip = this.tooltip;
    tip.replaceChildren();
    const head = el("div", "tip-head");
    head.textContent = `${this.xLabel} ${this.#formatX(anchorX)}`;
    tip.append(head);
    for (const r of rows) {
      const line = el("div", "tip-row");
      line.dataset.series = r.s.id;
      if (r === best) line.classList.add("best");
      const swatch = el("span", "swatch");
      swatch.style.background = r.s.color;
      const name = el("span", "tip-name");
      name.textContent = r.s.label;
      const value = el("span", "tip-value");
      value.textContent = readable(r.y);
      value.title = exact(r.y);
      line.append(swatch, name, value);
      if (r.outside) {
        // A run that ended (or had not started) at the hovered x: its nearest value, marked as such.
        line.classList.add("outside");
        const when = el("span", "tip-extra tip-outside");
        when.textContent = r.x < anchorX ? `last at ${this.xLabel} ${this.#formatX(r.x)}` : `first at ${this.xLabel} ${this.#formatX(r.x)}`;
        line.append(when);
        tip.append(line);
        continue;
      }
      if (r.s.lo && r.s.hi) {
        const range = el("span", "tip-extra tip-range");
        range.textContent = `${exact(r.s.lo[r.i])} … ${exact(r.s.hi[r.i])}`;
        line.append(range);
      }
      if (r.smooth !== null) {
        const sm = el("span", "tip-extra");
        sm.textContent = `smoothed ${readable(r.smooth)}`;
        line.append(sm);
      }
      if (r.x !== anchorX) {
        const at = el("span", "tip-extra");
        at.textContent = `@ ${this.#formatX(r.x)}`;
        line.append(at);
      }
      tip.append(line);
    }
    tip.hidden = false;
  }

  #onMove(e) {
    const rect = this.canvas.getBoundingClientRect();
    const px = e.clientX - rect.left;
    const py = e.clientY - rect.top;
    this.hover = { px, py };
    if (this.drag) {
      const L = this.layoutCache;
      const x = clamp(px, L.left, L.left + L.plotWidth);
      this.drag.current = x;
      const a = Math.min(this.drag.start, x);
      const b = Math.max(this.drag.start, x);
      Object.assign(this.selection.style, {
        left: `${a}px`,
        width: `${b - a}px`,
        top: `${MARGIN.top}px`,
        height: `${L.height}px`,
      });
      this.selection.hidden = b - a < 2;
      this.tooltip.hidden = true;
      return;
    }
    this.requestDraw();
  }

  #onDown(e) {
    if (e.button !== 0 || !this.layoutCache) return;
    const L = this.layoutCache;
    const rect = this.canvas.getBoundingClientRect();
    const px = e.clientX - rect.left;
    if (px < L.left || px > L.left + L.plotWidth) return;
    e.preventDefault();
    this.drag = { start: px, current: px };
    const up = () => {
      window.removeEventListener("mouseup", up);
      window.removeEventListener("mousemove", move);
      const { start, current } = this.drag;
      this.drag = null;
      this.selection.hidden = true;
      if (Math.abs(current - start) < 5) return this.requestDraw();
      const a = L.fromX(Math.min(start, current));
      const b = L.fromX(Math.max(start, current));
      this.zoom = [a, b];
      this.requestDraw();
      this.onZoom([a, b]);
    };
    const move = (ev) => {
      if (ev.target !== this.canvas) this.#onMove(ev);
    };
    window.addEventListener("mouseup", up);
    window.addEventListener("mousemove", move);
  }
}

/**
 * The y range without outliers: the values within three interquartile ranges
 * of the middle half (a gradient spike no longer flattens the rest).
 */
function withoutOutliers(visible, x0, x1, y0, y1, logY) {
  const values = [];
  for (const s of visible) {
    const [from, to] = indexRange(s.x, x0, x1);
    for (let i = from; i < to; i++) {
      const v = s.y[i];
      if (Number.isFinite(v) && !(logY && v <= 0)) values.push(v);
    }
  }
  if (values.length < 4) return [y0, y1];
  values.sort((a, b) => a - b);
  const q = (p) => values[Math.min(values.length - 1, Math.floor(p * (values.length - 1)))];
  const iqr = q(0.75) - q(0.25);
  const lo = Math.max(y0, q(0.25) - 3 * iqr);
  const hi = Math.min(y1, q(0.75) + 3 * iqr);
  const inside = values.filter((v) => v >= lo && v <= hi);
  return inside.length ? [inside[0], inside[inside.length - 1]] : [y0, y1];
}

/** Sorts a series by x when it is not sorted already (steps logged out of order). */
function sortByX(s) {
  let sorted = true;
  for (let i = 1; i < s.x.length; i++) {
    if (s.x[i] < s.x[i - 1]) {
      sorted = false;
      break;
    }
  }
  if (sorted) return s;
  const order = [...s.x.keys()].sort((a, b) => s.x[a] - s.x[b]);
  return { ...s, x: Float64Array.from(order, (i) => s.x[i]), y: Float64Array.from(order, (i) => s.y[i]) };
}

/**
 * Whether x lies beyond a series' first or last point by more than half its
 * usual spacing (or a few pixels, for a single point): the run had not
 * started, or had ended, there.
 */
function outsideSeries(xs, x, unitsPerPixel) {
  const n = xs.length;
  const spacing = n > 1 ? (xs[n - 1] - xs[0]) / (n - 1) : unitsPerPixel * 8;
  const slack = Math.max(spacing / 2, unitsPerPixel * 3);
  return x > xs[n - 1] + slack || x < xs[0] - slack;
}

/** The index range [from, to) of points within [x0, x1], widened by `extra` on each side. */
function indexRange(xs, x0, x1, extra = 0) {
  const from = Math.max(0, lowerBound(xs, x0) - extra);
  let end = lowerBound(xs, x1);
  while (end < xs.length && xs[end] <= x1) end++;
  return [from, Math.min(xs.length, end + extra)];
}

function lowerBound(xs, x) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function nearestIndex(xs, x) {
  if (!xs.length) return -1;
  const i = lowerBound(xs, x);
  if (i === 0) return 0;
  if (i === xs.length) return xs.length - 1;
  return x - xs[i - 1] <= xs[i] - x ? i - 1 : i;
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

function text(value) {
  const span = document.createElement("span");
  span.className = "legend-label";
  span.textContent = value;
  return span;
}
