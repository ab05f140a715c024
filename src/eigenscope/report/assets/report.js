// eigenscope report page: summary cards, sortable/filterable table, per-row details.
// Everything is drawn here from the embedded JSON (#data); nothing is fetched.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const COMPARE = DATA.kind === "compare";
  const FACTS = DATA.facts;   // alpha band, good statuses: defined once in analysis/schema.py
  const TEXT_COLS = new Set(["name", "role", "shape", "status", "flag", "warning", "dtype", "tensor"]);
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const isNum = (v) => typeof v === "number" && isFinite(v);
  function fmt(v) {
    if (v === null || v === undefined || v === "") return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e7) return String(v);
    const a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(2) : String(+v.toPrecision(4));
  }

  // ---------- summary ----------
  const BAD = new Set(["under_trained", "over_fit", "correlation_traps", "bad_status", "only_in_A", "only_in_B"]);
  function summary() {
    $("source").textContent = DATA.source || "";
    const cards = Object.entries(DATA.counts || {}).map(([k, v]) => {
      const cls = BAD.has(k) && v > 0 ? (k === "bad_status" ? "card bad" : "card warn") : "card";
      return `<div class="${cls}" data-key="${esc(k)}"><div class="v">${esc(fmt(v))}</div><div class="k">${esc(k.replace(/_/g, " "))}</div></div>`;
    });
    const col = COMPARE ? "d_alpha" : "alpha";
    const vals = DATA.rows.map((r) => r[col]).filter(isNum);
    if (vals.length) cards.push(`<div class="card hist"><div class="k">${COMPARE ? "Δα" : "α"} distribution (${vals.length} fits)</div>${histogram(vals, col)}</div>`);
    $("summary").innerHTML = cards.join("");
    $("figures").innerHTML = (DATA.figures || []).map(([cap, uri]) =>
      `<figure><img src="${uri}" alt="${esc(cap)}"><figcaption>${esc(cap)}</figcaption></figure>`).join("");
    if (COMPARE) {
      const list = (title, names) => `<h2>${esc(title)} (${names.length})</h2>` +
        (names.length ? `<ul class="names">${names.map((n) => `<li>${esc(n)}</li>`).join("")}</ul>` : `<div class="muted">none</div>`);
      $("onesided").innerHTML = list("only in A", DATA.only_a || []) + list("only in B", DATA.only_b || []);
    }
  }

  function histogram(vals, col) {
    const lo = Math.min(...vals), hi = Math.max(...vals), nb = 24;
    const w = (hi - lo) / nb || 1, counts = new Array(nb).fill(0);
    vals.forEach((v) => { counts[Math.min(nb - 1, Math.floor((v - lo) / w))]++; });
    const bars = counts.map((c, i) => [lo + i * w, lo + (i + 1) * w, c]);
    const band = col === "alpha" ? FACTS.alpha_band.map((x) => ({x, color: "#27ae60"})) : [];
    return plot({w: 260, h: 110, bars, vlines: band, compact: true});
  }

  // ---------- SVG plotting ----------
  function ticks(lo, hi, log) {
    if (log) {
      const out = [];
      for (let e = Math.ceil(Math.log10(lo)); e <= Math.floor(Math.log10(hi)); e++) out.push(Math.pow(10, e));
      return out.length ? out : [lo, hi];
    }
    const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 4 || 1)));
    const n = (hi - lo) / step, mult = n > 20 ? 5 : n > 8 ? 2 : 1, st = step * mult, out = [];
    for (let t = Math.ceil(lo / st) * st; t <= hi + 1e-12; t += st) out.push(+t.toPrecision(6));
    return out;
  }

  // opts: {w, h, logx, logy, title, xlabel, ylabel, bars: [[x0, x1, y]], lines: [{pts, color, label, dots}], vlines: [{x, color, label}]}
  function plot(o) {
    const W = o.w || 420, H = o.h || 280, L = o.compact ? 28 : 58, R = 10, T = o.title ? 20 : 8, B = o.compact ? 22 : 36;
    const xs = [], ys = [];
    (o.bars || []).forEach(([a, b, y]) => { xs.push(a, b); ys.push(y); });
    (o.lines || []).forEach((s) => s.pts.forEach(([x, y]) => { xs.push(x); ys.push(y); }));
    const ok = (v, log) => isFinite(v) && (!log || v > 0);
    const fx = xs.filter((v) => ok(v, o.logx)), fy = ys.filter((v) => ok(v, o.logy));
    if (!fx.length || !fy.length) return `<svg class="plot" width="${W}" height="${H}"><text x="${W / 2}" y="${H / 2}" text-anchor="middle">no data</text></svg>`;
    let [x0, x1] = [Math.min(...fx), Math.max(...fx)], [y0, y1] = [Math.min(...fy), Math.max(...fy)];
    if (!o.logy && !o.logx && o.bars) y0 = 0;
    if (x1 === x0) { x0 = o.logx ? x0 / 2 : x0 - 1; x1 = o.logx ? x1 * 2 : x1 + 1; }
    if (y1 === y0) { y0 = o.logy ? y0 / 2 : y0 - 1; y1 = o.logy ? y1 * 2 : y1 + 1; }
    const tx = (v) => o.logx ? Math.log10(v) : v, ty = (v) => o.logy ? Math.log10(v) : v;
    const X = (v) => L + (tx(v) - tx(x0)) / (tx(x1) - tx(x0)) * (W - L - R);
    const Y = (v) => H - B - (ty(v) - ty(y0)) / (ty(y1) - ty(y0)) * (H - T - B);
    const parts = [];
    ticks(x0, x1, o.logx).forEach((t) => parts.push(`<line class="grid" x1="${X(t)}" x2="${X(t)}" y1="${T}" y2="${H - B}"/><text x="${X(t)}" y="${H - B + 12}" text-anchor="middle">${fmt(t)}</text>`));
    if (!o.compact) ticks(y0, y1, o.logy).forEach((t) => parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${Y(t)}" y2="${Y(t)}"/><text x="${L - 4}" y="${Y(t) + 3}" text-anchor="end">${fmt(t)}</text>`));
    (o.bars || []).forEach(([a, b, y]) => {
      if (!ok(a, o.logx) || !ok(b, o.logx) || !ok(y, o.logy) || y <= 0) return;
      const base = o.logy ? H - B : Y(Math.max(y0, 0));
      parts.push(`<rect x="${X(a)}" y="${Y(y)}" width="${Math.max(0.5, X(b) - X(a) - 0.5)}" height="${Math.max(0, base - Y(y))}" fill="#7aa6c2"/>`);
    });
    (o.lines || []).forEach((s) => {
      const pts = s.pts.filter(([x, y]) => ok(x, o.logx) && ok(y, o.logy) && y >= y0 && y <= y1);
      if (s.dots) pts.forEach(([x, y]) => parts.push(`<circle cx="${X(x)}" cy="${Y(y)}" r="1.8" fill="${s.color}"/>`));
      else if (pts.length) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${pts.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ")}"/>`);
    });
    (o.vlines || []).forEach((v) => { if (ok(v.x, o.logx) && v.x >= x0 && v.x <= x1) parts.push(`<line x1="${X(v.x)}" x2="${X(v.x)}" y1="${T}" y2="${H - B}" stroke="${v.color}" stroke-dasharray="4 3"/>`); });
    parts.push(`<line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/><line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/>`);
    if (o.title) parts.push(`<text x="${L}" y="13" font-weight="600">${esc(o.title)}</text>`);
    if (o.xlabel) parts.push(`<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle">${esc(o.xlabel)}</text>`);
    if (o.ylabel) parts.push(`<text transform="translate(12 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(o.ylabel)}</text>`);
    const legend = [...(o.lines || []), ...(o.vlines || [])].filter((s) => s.label);
    legend.forEach((s, i) => parts.push(`<text x="${W - R - 4}" y="${T + 12 + 12 * i}" text-anchor="end" fill="${s.color}">${esc(s.label)}</text>`));
    return `<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${parts.join("")}</svg>`;
  }

  // ---------- spectra drawn from the compact copy {s: values (descending), i: their ranks, M} ----------
  // count(>= lambda) is known at the kept points (rank + 1) and interpolated in log lambda between them.
  function esdPlot(row, sp) {
    const N = Math.max(row.rows || 1, row.cols || 1), M = sp.M;
    const pts = sp.s.map((s, j) => [s * s / N, sp.i[j] + 1]).filter(([l]) => l > 0).reverse(); // ascending lambda
    if (pts.length < 2) return plot({title: "ESD", bars: []});
    const count = (x) => {  // number of eigenvalues >= x, monotone interpolation
      if (x <= pts[0][0]) return M;
      for (let j = 1; j < pts.length; j++) if (x <= pts[j][0]) {
        const [a, ca] = pts[j - 1], [b, cb] = pts[j], t = (Math.log(x) - Math.log(a)) / (Math.log(b) - Math.log(a));
        return ca + t * (cb - ca);
      }
      return 0;
    };
    const lo = pts[0][0] * 0.98, hi = pts[pts.length - 1][0] * 1.02, nb = 40, bars = [];
    for (let b = 0; b < nb; b++) {
      const a = lo * Math.pow(hi / lo, b / nb), c = lo * Math.pow(hi / lo, (b + 1) / nb);
      bars.push([a, c, (count(a) - count(c)) / (M * (c - a))]);
    }
    const lines = [], vlines = [];
    if (isNum(row.mp_sigma)) {
      const g = Math.min(row.rows, row.cols) / N, s2 = row.mp_sigma * row.mp_sigma;
      const ea = s2 * (1 - Math.sqrt(g)) ** 2, eb = s2 * (1 + Math.sqrt(g)) ** 2, mp = [];
      for (let k = 1; k < 200; k++) {
        const x = Math.max(ea, lo) * Math.pow(Math.min(eb, hi) / Math.max(ea, lo), k / 200);
        const d = Math.sqrt(Math.max(0, (eb - x) * (x - ea))) / (2 * Math.PI * g * s2 * x);
        if (d > 0) mp.push([x, d]);
      }
      lines.push({pts: mp, color: "#c0392b", label: `MP σ=${fmt(row.mp_sigma)}`});
    }
    if (isNum(row.mp_edge)) vlines.push({x: row.mp_edge, color: "#c0392b", label: "MP edge"});
    return plot({title: "ESD (λ/N)", logx: true, logy: true, bars, lines, vlines, xlabel: "eigenvalue λ / N", ylabel: "density"});
  }

  function tailPlot(row, sp) {
    const M = sp.M, pts = sp.s.map((s, j) => [s * s, (sp.i[j] + 1) / M]).filter(([l]) => l > 0);
    const lines = [{pts, color: "#34495e", dots: true, label: "empirical CCDF"}], vlines = [];
    if (isNum(row.alpha) && isNum(row.xmin)) {
      const frac = isNum(row.n_tail) ? row.n_tail / M : 1, top = pts.length ? pts[0][0] : row.xmin, pl = [];
      for (let k = 0; k <= 50; k++) { const x = row.xmin * Math.pow(top / row.xmin, k / 50); pl.push([x, frac * Math.pow(x / row.xmin, 1 - row.alpha)]); }
      lines.push({pts: pl, color: "#c0392b", label: `power law α=${fmt(row.alpha)}`});
      vlines.push({x: row.xmin, color: "#e67e22", label: `xmin=${fmt(row.xmin)}`});
    }
    return plot({title: "tail", logx: true, logy: true, lines, vlines, xlabel: "eigenvalue λ", ylabel: "P(X ≥ λ)"});
  }

  function overlayPlot(sp) {
    const curve = (c) => c.s.map((s, j) => [c.i[j] + 1, s]);
    return plot({title: "singular values", logy: true, xlabel: "rank i", ylabel: "s_i",
      lines: [{pts: curve(sp.a), color: "#34495e", label: "A"}, {pts: curve(sp.b), color: "#c0392b", label: "B"}]});
  }

  function details(row) {
    const kv = Object.entries(row).filter(([k]) => k !== "_k" && (k !== "flag" || row.flag))
      .map(([k, v]) => `<div>${esc(k)}</div><div>${esc(fmt(v))}</div>`).join("");
    const imgs = ((DATA.images || {})[row.name] || []).map((u) => `<img src="${u}" alt="plot of ${esc(row.name)}">`).join("");
    const sp = (DATA.spectra || {})[row.name];
    let svgs = "";
    if (sp && COMPARE) svgs = overlayPlot(sp);
    else if (sp && !imgs) svgs = esdPlot(row, sp) + tailPlot(row, sp);
    const none = !imgs && !svgs ? `<div class="muted">no spectrum saved for this row</div>` : "";
    return `<div class="detail-grid"><div class="kv">${kv}</div>${imgs}${svgs}${none}</div>`;
  }

  // ---------- table ----------
  const cols = DATA.columns;
  let sortCol = null, sortDir = 1;
  const rows = DATA.rows.map((r, k) => Object.assign({_k: k}, r));

  function parseFilter(text) {
    return text.trim().split(/\s+/).filter(Boolean).map((tok) => {
      const m = tok.match(/^([A-Za-z_]\w*)(>=|<=|!=|=|>|<)(.+)$/);
      if (!m) return (r) => cols.some((c) => TEXT_COLS.has(c) && String(r[c] ?? "").toLowerCase().includes(tok.toLowerCase()));
      const [, c, op, raw] = m, num = Number(raw);
      return (r) => {
        const v = r[c];
        if (op === "=" || op === "!=") {
          const eq = isNum(v) && isFinite(num) ? v === num : String(v ?? "").toLowerCase() === raw.toLowerCase();
          return op === "=" ? eq : !eq;
        }
        if (!isNum(v)) return false;
        return op === ">" ? v > num : op === "<" ? v < num : op === ">=" ? v >= num : v <= num;
      };
    });
  }

  function render() {
    const tests = parseFilter($("filter").value), flaggedOnly = $("flagged").checked;
    let shown = rows.filter((r) => rowFilter(r) && (!flaggedOnly || r.flag) && tests.every((t) => t(r)));
    if (sortCol) {
      const c = sortCol;
      shown = shown.slice().sort((a, b) => {
        const va = a[c], vb = b[c];
        if (isNum(va) && isNum(vb)) return sortDir * (va - vb);
        if (va === null || va === undefined) return 1;
        if (vb === null || vb === undefined) return -1;
        return sortDir * String(va).localeCompare(String(vb), undefined, {numeric: true});
      });
    }
    const unusable = (r) => r.status !== undefined && !FACTS.good_statuses.includes(r.status);
    const body = shown.map((r) => `<tr class="row${r.flag ? " flagged" : ""}${unusable(r) ? " unusable" : ""}" data-k="${r._k}">` +
      cols.map((c) => `<td class="${TEXT_COLS.has(c) ? "txt " : ""}${c === "flag" ? "flag" : ""}">${esc(fmt(r[c]))}</td>`).join("") + "</tr>").join("");
    document.querySelector("#rows tbody").innerHTML = body;
    $("shown").textContent = `${shown.length} of ${rows.length} rows`;
  }

  function header() {
    document.querySelector("#rows thead").innerHTML = "<tr>" + cols.map((c) =>
      `<th data-col="${esc(c)}" class="${TEXT_COLS.has(c) ? "txt" : ""}${c === sortCol ? (sortDir > 0 ? " sorted-asc" : " sorted-desc") : ""}" title="sort by ${esc(c)}">${esc(c)}</th>`).join("") + "</tr>";
  }

  document.querySelector("#rows thead").addEventListener("click", (e) => {
    const th = e.target.closest("th");
    if (!th) return;
    const c = th.dataset.col;
    sortDir = sortCol === c ? -sortDir : (TEXT_COLS.has(c) ? 1 : -1);
    sortCol = c;
    header();
    render();
  });
  document.querySelector("#rows tbody").addEventListener("click", (e) => {
    const tr = e.target.closest("tr.row");
    if (!tr) return;
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("details")) { next.remove(); tr.classList.remove("open"); return; }
    const d = document.createElement("tr");
    d.className = "details";
    d.innerHTML = `<td colspan="${cols.length}">${details(rows[+tr.dataset.k])}</td>`;
    tr.after(d);
    tr.classList.add("open");
  });
  $("filter").addEventListener("input", render);
  $("flagged").addEventListener("change", render);

  // ---------- extension point: a page's own script (e.g. trajectory.js) may restrict the rows ----------
  let rowFilter = () => true;
  window.eigenscopeTable = {fmt, esc, setRowFilter(f) { rowFilter = f; render(); }};

  summary();
  header();
  render();
})();
