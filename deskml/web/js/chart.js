// A small time-series line chart on a canvas: a fixed time window, one or more series, gaps for
// missing points, sized to its box and redrawn on resize and theme change.

function cssVar(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * exp) return step * exp;
  return 10 * exp;
}

function fmtValue(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${v.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

/**
 * new LineChart(canvas, {series: [{name, color}], unit, windowSeconds})
 * chart.push(timeMs, [values...]) then chart.draw().
 */
export class LineChart {
  constructor(canvas, { series, unit = "", windowSeconds = 300 }) {
    this.canvas = canvas;
    this.series = series;
    this.unit = unit;
    this.window = windowSeconds * 1000;
    this.points = []; // [t, [v...]]
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(canvas);
    this.onTheme = () => this.draw();
    document.addEventListener("themechange", this.onTheme);
  }

  push(t, values) {
    this.points.push([t, values]);
    const cutoff = t - this.window;
    while (this.points.length && this.points[0][0] < cutoff) this.points.shift();
  }

  latest(i = 0) {
    for (let k = this.points.length - 1; k >= 0; k -= 1) {
      const v = this.points[k][1][i];
      if (v !== null && v !== undefined) return v;
    }
    return null;
  }

  destroy() {
    this.observer.disconnect();
    document.removeEventListener("themechange", this.onTheme);
  }

  draw() {
    const { canvas } = this;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const text = cssVar("--muted", "#888");
    const grid = cssVar("--border", "#ddd");
    const pad = { left: 46, right: 8, top: 8, bottom: 18 };
    const w = width - pad.left - pad.right;
    const hgt = height - pad.top - pad.bottom;
    const now = this.points.length ? this.points[this.points.length - 1][0] : Date.now();
    const start = now - this.window;
    let max = 0;
    for (const [, values] of this.points) for (const v of values) if (v !== null && v > max) max = v;
    max = niceMax(max * 1.1);

    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = text;
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i += 1) {
      const y = pad.top + hgt - (hgt * i) / 4;
      ctx.beginPath();
      ctx.moveTo(pad.left, Math.round(y) + 0.5);
      ctx.lineTo(pad.left + w, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillText(fmtValue((max * i) / 4, ""), pad.left - 6, y);
    }
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    ctx.fillText(`-${Math.round(this.window / 60000)} min`, pad.left, height - 4);
    ctx.textAlign = "right";
    ctx.fillText("now", pad.left + w, height - 4);

    this.series.forEach((s, i) => {
      ctx.strokeStyle = cssVar(s.color, s.color);
      ctx.lineWidth = 2;
      ctx.beginPath();
      let drawing = false;
      for (const [t, values] of this.points) {
        const v = values[i];
        if (v === null || v === undefined || Number.isNaN(v)) { drawing = false; continue; }
        const x = pad.left + ((t - start) / this.window) * w;
        const y = pad.top + hgt - (Math.min(v, max) / max) * hgt;
        if (drawing) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        drawing = true;
      }
      ctx.stroke();
    });
  }
}

export { fmtValue };
