// eigenscope trajectory view (a table of several sources): each source's rows behind a selector,
// and the matrices that moved most between the first and the last source. Runs after report.js
// and uses only what it exports (window.eigenscopeTable: fmt, esc, setRowFilter).
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const T = window.eigenscopeTable;
  if (DATA.kind !== "trajectory" || !T) return;
  const series = DATA.series || [];
  const label = (s) => (s.step !== null && s.step !== undefined ? `step ${s.step}: ` : "") + s.source +
    (s.failed ? ` (${s.failed} failed)` : "");

  // ---------- the selector: one source's table (the last by default), or all of them ----------
  const select = document.createElement("select");
  select.id = "series";
  select.innerHTML = `<option value="all">all ${series.length} sources</option>` +
    series.map((s, i) => `<option value="${i}">${T.esc(label(s))}</option>`).join("");
  const box = document.createElement("label");
  box.append("source ", select);
  document.querySelector(".controls").prepend(box);
  function choose(value) {
    select.value = value;
    const s = series[+value];
    T.setRowFilter(value === "all" ? () => true : (r) => r.source === s.source);
  }
  select.addEventListener("change", () => choose(select.value));
  choose(series.length ? String(series.length - 1) : "all");

  // ---------- moved most, first -> last; a click shows that matrix at every step ----------
  const moved = DATA.moved || [];
  const cols = moved.length ? Object.keys(moved[0]).filter((c) => c !== "flag") : [];
  const txt = (c) => (c === "name" || c === "role" ? "txt" : "");
  const section = document.createElement("section");
  section.id = "moved";
  const head = series.length ? `<h2>moved most from ${T.esc(label(series[0]))} to ${T.esc(label(series[series.length - 1]))} (largest |Δα| first)</h2>` : "";
  section.innerHTML = head + (moved.length
    ? `<div class="scroll"><table><thead><tr>${cols.map((c) => `<th class="${txt(c)}">${T.esc(c)}</th>`).join("")}</tr></thead><tbody>` +
      moved.map((r) => `<tr class="row" data-name="${T.esc(r.name)}" title="show this matrix at every step">${cols.map((c) => `<td class="${txt(c)}">${T.esc(T.fmt(r[c]))}</td>`).join("")}</tr>`).join("") +
      "</tbody></table></div>"
    : `<div class="muted">no matrix is in both the first and the last source</div>`);
  document.getElementById("tablebox").before(section);
  section.addEventListener("click", (e) => {
    const tr = e.target.closest("tr.row");
    if (!tr) return;
    const filter = document.getElementById("filter");
    filter.value = tr.dataset.name;
    choose("all");
    filter.dispatchEvent(new Event("input"));
    document.getElementById("tablebox").scrollIntoView();
  });
})();
