// InfoGAN latent explorer. No dependencies, no build step: it calls the service's own
// POST endpoints (/info, /generate, /traverse) exactly as any other client does.
"use strict";
(() => {
  // The page is served at <service>/explorer/, so the API sits one level up.
  const API = new URL("../", document.baseURI);
  const DEBOUNCE_MS = 25;      // coalesce a slider drag into few requests
  const SLIDER = { min: -2, max: 2, step: 0.05 };
  const MAX_SAMPLES = 64;      // the page's own cap (the service allows more)
  const LOW_PURITY = 0.5;      // a label drawn less often than this is marked, not hidden

  const $ = (id) => document.getElementById(id);
  const grid = $("grid");
  const status = $("status");

  // Read by tests and bench/explorer_latency.py: one timing per painted grid.
  const explorer = window.explorer = {
    ready: false, paints: 0, requests: 0, aborted: 0, errors: 0, timings: [], info: null,
    state: { n: 16, seed: 0, codes: {} },
  };
  const state = explorer.state;
  // True while an input is not yet on screen (debouncing, in flight or decoding).
  explorer.pending = () => firstUnpainted !== null || inflight !== null;

  async function post(endpoint, body, signal) {
    const response = await fetch(new URL(endpoint, API), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
    });
    if (!response.ok) {
      const text = await response.text();
      throw new Error(`${endpoint}: HTTP ${response.status} ${text.slice(0, 300)}`);
    }
    return response;
  }

  function say(message) { status.textContent = message; }

  function fmt(value) {
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? String(value) : value.toFixed(3);
  }

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- the sample grid ---------------------------------------------------------------------
  let debounceTimer = 0;
  let inflight = null;        // AbortController of the request whose answer we still want
  let firstUnpainted = null;  // performance.now() of the oldest input not yet on screen
  const gridUrls = new Set();  // object URLs made for the grid; all but the shown one get revoked

  function changed() {
    if (firstUnpainted === null) firstUnpainted = performance.now();
    grid.classList.add("stale");
    clearTimeout(debounceTimer);
    debounceTimer = setTimeout(refresh, DEBOUNCE_MS);
  }

  function gridRequest() {
    return { n: state.n, seed: state.seed, codes: { ...state.codes }, ncol: Math.ceil(Math.sqrt(state.n)) };
  }

  function describe(body) {
    const codes = Object.entries(body.codes).map(([k, v]) => `${k}=${fmt(v)}`).join(", ");
    return `${body.n} samples, seed ${body.seed}${codes ? ", " + codes : ""}`;
  }

  async function refresh() {
    if (inflight) { inflight.abort(); explorer.aborted += 1; }
    const controller = inflight = new AbortController();
    const since = firstUnpainted ?? performance.now();
    const sent = performance.now();
    const body = gridRequest();
    explorer.requests += 1;
    try {
      const blob = await (await post("generate", body, controller.signal)).blob();
      if (controller !== inflight) return;          // a newer request superseded this one
      const received = performance.now();
      const url = URL.createObjectURL(blob);
      gridUrls.add(url);
      grid.src = url;
      await grid.decode();
      if (controller !== inflight) return;
      await new Promise((resolve) => requestAnimationFrame(resolve));  // the frame that shows it
      const painted = performance.now();
      for (const old of gridUrls) if (old !== url) { URL.revokeObjectURL(old); gridUrls.delete(old); }
      inflight = null;
      firstUnpainted = null;
      grid.classList.remove("stale");
      grid.alt = `Generated samples: ${describe(body)}`;
      $("grid-caption").textContent = describe(body);
      const link = $("download-grid");
      link.href = url;
      link.download = `infogan-seed${body.seed}-n${body.n}.png`;
      link.removeAttribute("aria-disabled");
      explorer.timings.push({ ms: painted - since, wait_ms: sent - since, request_ms: received - sent,
                              decode_ms: painted - received,
                              at: painted, body });
      explorer.paints += 1;
      say("");
    } catch (err) {
      if (err.name === "AbortError" || controller !== inflight) return;
      inflight = null;
      explorer.errors += 1;
      say(`Could not draw samples: ${err.message}`);
    }
  }

  // ---- controls, built from /info ------------------------------------------------------------
  function continuousControl(code) {
    const id = `code-${code.name}`;
    const wrap = el("div", { class: "slider" });
    const label = el("label", { for: id }, code.role ? code.role : `${code.name} — no clear role found`);
    if (code.role) {
      const r = typeof code.r === "number" ? `, r ${code.r.toFixed(2)}` : "";
      label.append(" ", el("small", { class: "code-index" }, `${code.name}${r}`));
    }
    wrap.append(label);
    const low = Math.max(SLIDER.min, code.fixed_range ? code.fixed_range[0] : SLIDER.min);
    const high = Math.min(SLIDER.max, code.fixed_range ? code.fixed_range[1] : SLIDER.max);
    const input = el("input", { id, type: "range", min: low, max: high, step: SLIDER.step, value: 0,
                                "data-code": code.name });
    const out = el("output", { for: id, id: `${id}-value` }, "0.00");
    input.addEventListener("input", () => {
      state.codes[code.name] = Number(input.value);
      out.textContent = Number(input.value).toFixed(2);
      changed();
    });
    state.codes[code.name] = 0;
    const track = el("div", { class: "track" });
    track.append(input, out);
    wrap.append(track);
    return wrap;
  }

  // The share of what a value draws that carries its label: G's (generated purity) when
  // evaluation measured it, else Q's reading of real images.
  function purityOf(entry) {
    return typeof entry.generated_purity === "number" ? entry.generated_purity : entry.purity;
  }

  function categoricalControl(code) {
    const labelId = `code-${code.name}-label`;
    const wrap = el("div");
    const labelled = Array.isArray(code.values) && code.values.length === code.size;
    const title = labelled ? `${code.name} — label (${code.size} values)` : `${code.name} — category (${code.size} values)`;
    wrap.append(el("span", { id: labelId, class: "group-label" }, title));
    const group = el("div", { role: "group", "aria-labelledby": labelId, id: `code-${code.name}`,
                              "data-code": code.name });
    const values = Array.from({ length: code.size }, (_, i) => [i, labelled ? code.values[i] : null]);
    if (labelled) values.sort((a, b) => (a[1].label_index ?? a[0]) - (b[1].label_index ?? b[0]) || a[0] - b[0]);
    const choices = [[null, null], ...values];  // labelled: in label order (0-9, or the class order)
    for (const [value, entry] of choices) {
      const button = el("button", { type: "button", "aria-pressed": String(value === null),
                                    "data-value": value === null ? "any" : String(value) });
      if (value === null) {
        button.textContent = "any";
        button.title = "draw the category at random for each sample";
      } else if (entry) {
        const purity = purityOf(entry);
        button.dataset.label = entry.label;
        button.append(el("span", { class: "label" }, entry.label), el("small", { class: "code-index" }, String(value)));
        button.title = `${code.name}=${value} draws ${entry.label}: purity ${(100 * purity).toFixed(0)} %`;
        if (purity < LOW_PURITY) {
          button.classList.add("low-purity");
          button.append(el("small", { class: "purity-warning" }, "low purity"));
          button.title += " (low: often draws something else)";
        }
      } else {
        button.textContent = String(value);
      }
      button.addEventListener("click", () => {
        for (const other of group.querySelectorAll("button")) other.setAttribute("aria-pressed", "false");
        button.setAttribute("aria-pressed", "true");
        if (value === null) delete state.codes[code.name]; else state.codes[code.name] = value;
        changed();
      });
      group.append(button);
    }
    wrap.append(group);
    return wrap;
  }

  function noiseControls() {
    const seed = $("seed");
    const count = $("count");
    seed.max = String(explorer.info.limits.seed_max);
    count.max = String(Math.min(MAX_SAMPLES, explorer.info.limits.max_images));
    seed.addEventListener("input", () => {
      const value = Number(seed.value);
      if (Number.isInteger(value) && value >= 0 && value <= Number(seed.max)) { state.seed = value; changed(); }
    });
    $("new-noise").addEventListener("click", () => {
      state.seed = Math.floor(Math.random() * 1e9);
      seed.value = String(state.seed);
      changed();
    });
    count.addEventListener("input", () => {
      const value = Number(count.value);
      if (Number.isInteger(value) && value >= 1 && value <= Number(count.max)) { state.n = value; changed(); }
    });
  }

  function modelFacts(info) {
    const facts = $("model-facts");
    const prov = info.provenance || {};
    const rows = [["tag", info.model.tag], ["version", info.model.version], ["created", info.model.created],
                  ["experiment", prov.experiment], ["epoch", prov.epoch], ["images seen", prov.images_seen],
                  ["git revision", prov.git_revision],
                  ["image", `${info.image.channels}×${info.image.height}×${info.image.width}`],
                  ["noise dims", info.latent.noise_dim]];
    for (const [key, value] of rows) {
      if (value === undefined || value === null) continue;
      facts.append(el("dt", {}, key), el("dd", {}, fmt(value)));
    }
    const body = $("metrics").tBodies[0];
    const metrics = info.metrics || {};
    const quality = metrics.image_quality || {};
    const roleRows = Object.entries(info.roles || {}).map(([role, entry]) =>
      [`${role}_r`, `${role} r (${entry.code} on ${entry.attribute})`, entry.r]);
    // [data-metric key, what the row says, value]
    const metricRows = [["accuracy", "accuracy (Q on real images)", metrics.accuracy],
                   ["generated_purity", "generated purity (G, feature net)", metrics.generated_purity],
                   ["nmi", "nmi", metrics.nmi], ["mi_cat", "mi_cat", metrics.mi_cat], ["h_cat", "h_cat", metrics.h_cat],
                   ["mi_cat_fraction", "mi_cat_fraction", metrics.mi_cat_fraction],
                   ["mi_cont", "mi_cont", metrics.mi_cont], ["h_cont", "h_cont", metrics.h_cont], ...roleRows,
                   ["fid", "FID", quality.fid], ["precision", "precision", quality.precision],
                   ["recall", "recall", quality.recall]];
    for (const [key, text, value] of metricRows) {
      if (typeof value !== "number") continue;
      const row = el("tr", { "data-metric": key });
      row.append(el("th", { scope: "row" }, text), el("td", {}, fmt(value)));
      body.append(row);
    }
    $("model-line").textContent = `Model ${info.model.tag}` +
      (typeof metrics.accuracy === "number" ? ` · accuracy ${fmt(metrics.accuracy)}` : "") +
      (typeof metrics.generated_purity === "number" ? ` · generated purity ${fmt(metrics.generated_purity)}` : "") +
      (typeof metrics.nmi === "number" ? ` · NMI ${fmt(metrics.nmi)}` : "");
  }

  // ---- traversal player ----------------------------------------------------------------------
  let gifUrl = null;
  let travController = null;

  function traversalControls(codes) {
    const select = $("trav-code");
    for (const code of codes) {
      const text = code.kind === "continuous" && code.role ? `${code.role} (${code.name})` : code.name;
      select.append(el("option", { value: code.name }, text));
    }
    const firstContinuous = codes.find((c) => c.kind === "continuous");
    if (firstContinuous) select.value = firstContinuous.name;
    $("trav-play").addEventListener("click", playTraversal);
    $("trav-stop").addEventListener("click", stopTraversal);
  }

  function intIn(id, low, high) {
    const value = Math.round(Number($(id).value));
    return Math.min(high, Math.max(low, Number.isFinite(value) ? value : low));
  }

  async function playTraversal() {
    if (travController) travController.abort();
    const controller = travController = new AbortController();
    const body = { code: $("trav-code").value, low: SLIDER.min, high: SLIDER.max, rows: intIn("trav-rows", 1, 8),
                   steps: intIn("trav-steps", 2, 32), seed: state.seed, format: "gif",
                   frame_ms: intIn("trav-ms", 20, 5000) };
    say("Rendering the traversal…");
    try {
      const blob = await (await post("traverse", body, controller.signal)).blob();
      if (controller !== travController) return;
      if (gifUrl) URL.revokeObjectURL(gifUrl);
      gifUrl = URL.createObjectURL(blob);
      const img = $("trav-img");
      img.src = gifUrl;
      img.hidden = false;
      const spec = explorer.info.latent.codes.find((c) => c.name === body.code);
      const sweep = spec && spec.kind === "categorical" ? `every value 0–${spec.size - 1}`
        : `${body.low} → ${body.high} in ${body.steps} steps`;
      img.alt = `Animated traversal of ${body.code}: ${sweep}, ${body.rows} rows, seed ${body.seed}`;
      $("trav-caption").textContent = `${body.code}: ${sweep}; ${body.rows} rows, seed ${body.seed}, ${body.frame_ms} ms/frame`;
      const link = $("download-gif");
      link.href = gifUrl;
      link.download = `infogan-traversal-${body.code}-seed${body.seed}.gif`;
      link.removeAttribute("aria-disabled");
      $("trav-stop").disabled = false;
      explorer.traversals = (explorer.traversals || 0) + 1;
      say("");
    } catch (err) {
      if (err.name !== "AbortError") say(`Could not render the traversal: ${err.message}`);
    }
  }

  function stopTraversal() {
    if (travController) travController.abort();
    travController = null;
    const img = $("trav-img");
    img.hidden = true;
    img.removeAttribute("src");
    $("trav-caption").textContent = "";
    $("trav-stop").disabled = true;  // the last GIF stays downloadable
  }

  // ---- start ---------------------------------------------------------------------------------
  async function start() {
    try {
      const info = explorer.info = await (await post("info", {})).json();
      const codes = info.latent.codes;
      for (const code of codes.filter((c) => c.kind === "continuous")) $("continuous-controls").append(continuousControl(code));
      for (const code of codes.filter((c) => c.kind === "categorical")) $("categorical-controls").append(categoricalControl(code));
      noiseControls();
      traversalControls(codes);
      modelFacts(info);
      explorer.ready = true;
      changed();
    } catch (err) {
      say(`Could not read /info: ${err.message}`);
    }
  }

  start();
})();
