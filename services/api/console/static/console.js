// The docvl web console: plain JavaScript, no dependencies. Every model output it shows arrives already
// rendered safe by the API (GET /v1/jobs/{id}/pages); everything else is set as text, never as HTML.
"use strict";

const KEY = "docvl.apiKey"; // sessionStorage: this tab only, gone when it closes
const MAX_LIST_STREAMS = 4; // a browser keeps ~6 connections per origin: leave room for the rest
const TASK_NAMES = {
  ocr: "OCR", chart2code: "Chart to code", web2html: "Webpage to HTML", qa: "Question answering", layout: "Layout",
};
// The layout's fixed vocabulary (docvl/layout/labels.py): each has its colour in console.css.
const LABELS = [
  "title", "section_header", "text", "list", "table", "figure", "formula", "caption", "footnote", "header",
  "footer", "page_number", "other",
];

const $ = (id) => document.getElementById(id);
let viewAbort = new AbortController(); // everything the current view started (streams, fetches)

// -- the API ----------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY);
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (!response.ok) {
    let code = "http_error";
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      code = body.error.code;
      message = body.error.message;
    } catch (_) {
      // not the API's JSON error: keep the status line
    }
    if (response.status === 401) {
      signOut("Your API key was not accepted: sign in again.");
    }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

// Server-sent events read with fetch (EventSource cannot send the Authorization header), resumed with
// Last-Event-ID when the connection drops, until the job ends or `signal` aborts.
async function streamEvents(jobId, onEvent, signal) {
  let lastId = 0;
  while (!signal.aborted) {
    try {
      const headers = lastId ? { "Last-Event-ID": String(lastId) } : {};
      const response = await api(`/v1/jobs/${jobId}/events`, { headers, signal });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (event === null) continue;
          if (event.id) lastId = Number(event.id);
          onEvent(event);
          if (event.name === "end") return;
        }
      }
    } catch (error) {
      if (signal.aborted || error instanceof ApiError) return;
    }
    await pause(1000, signal); // the connection dropped: resume after a moment
  }
}

function parseEvent(block) {
  const event = { name: "message", id: null, data: "" };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.name = value;
    else if (field === "id") event.id = value;
    else if (field === "data") event.data += value;
  }
  if (!event.data) return null;
  try {
    event.data = JSON.parse(event.data);
  } catch (_) {
    return null;
  }
  return event;
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// -- small DOM helpers ------------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function notice(text) {
  $("notice").textContent = text;
}

function finished(status) {
  return ["succeeded", "partially_succeeded", "failed", "cancelled"].includes(status);
}

function progressText(progress) {
  const failed = progress.pages_failed ? `, ${progress.pages_failed} failed` : "";
  const total = progress.pages_total || "?";
  return `${progress.pages_done} of ${total} done${failed}`;
}

function setProgress(bar, progress) {
  bar.max = Math.max(progress.pages_total, 1);
  bar.value = progress.pages_done + progress.pages_failed;
}

function statusBadge(node, status) {
  node.textContent = status.replace("_", " ");
  node.className = `status status-${status}`;
}

// -- views ------------------------------------------------------------------------------------------

function show(view) {
  for (const id of ["sign-in-view", "jobs-view", "job-view"]) $(id).hidden = id !== view;
  const signedIn = view !== "sign-in-view";
  $("sign-out").hidden = !signedIn;
  $("nav-jobs").hidden = !signedIn;
}

function route() {
  viewAbort.abort();
  viewAbort = new AbortController();
  notice("");
  if (!apiKey()) {
    show("sign-in-view");
    $("api-key").focus();
    return;
  }
  const match = location.hash.match(/^#\/jobs\/([0-9a-f-]{36})$/);
  if (match) showJob(match[1], viewAbort.signal);
  else showJobs(viewAbort.signal);
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  for (const url of imageUrls.values()) URL.revokeObjectURL(url);
  imageUrls.clear();
  $("sign-in-error").textContent = message || "";
  if (location.hash !== "#/") location.hash = "#/";
  route();
}

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("sign-in-error").textContent = "";
  if (!key) {
    $("sign-in-error").textContent = "Enter your API key.";
    $("api-key").focus();
    return;
  }
  let response;
  try {
    response = await fetch("/v1/jobs?limit=1", { headers: { Authorization: `Bearer ${key}` }, cache: "no-store" });
  } catch (_) {
    $("sign-in-error").textContent = "The API did not answer: check that it is running, then try again.";
    return;
  }
  if (!response.ok) {
    $("sign-in-error").textContent = response.status === 401
      ? "That key was not accepted: check it, or ask for a new one."
      : `The API answered ${response.status}: try again.`;
    $("api-key").select();
    return;
  }
  sessionStorage.setItem(KEY, key);
  $("api-key").value = "";
  route();
  $("main").focus();
}

// -- the job list -----------------------------------------------------------------------------------

async function showJobs(signal) {
  show("jobs-view");
  document.title = "Jobs · docvl console";
  let page;
  try {
    page = await apiJson("/v1/jobs?limit=50", { signal });
  } catch (error) {
    if (!signal.aborted) notice(`Could not load your jobs: ${error.message}`);
    return;
  }
  if (signal.aborted) return;
  const list = $("jobs-list");
  list.replaceChildren(...page.jobs.map(jobItem));
  $("jobs-empty").hidden = page.jobs.length > 0;
  showOlder(page.next_cursor, signal);
  // A few streams at once, each taking the next unfinished job when its own has ended.
  const waiting = page.jobs.filter((job) => !finished(job.status)).map((job) => job.id);
  const watchNext = async () => {
    while (waiting.length && !signal.aborted) await watchListed(waiting.shift(), signal);
  };
  for (let i = 0; i < Math.min(MAX_LIST_STREAMS, waiting.length); i++) watchNext();
}

function showOlder(cursor, signal) {
  const button = $("older-jobs");
  button.hidden = cursor === null;
  button.onclick = async () => {
    button.disabled = true;
    try {
      const page = await apiJson(`/v1/jobs?limit=50&cursor=${encodeURIComponent(cursor)}`, { signal });
      $("jobs-list").append(...page.jobs.map(jobItem));
      showOlder(page.next_cursor, signal);
    } catch (error) {
      if (!signal.aborted) notice(`Could not load older jobs: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  };
}

function jobItem(job) {
  const bar = el("progress", { max: "1", value: "0", "aria-label": `Pages of job ${job.id.slice(0, 8)}` });
  setProgress(bar, job.progress);
  const status = el("span", {});
  statusBadge(status, job.status);
  return el(
    "li", { id: `job-${job.id}`, class: "job" },
    el("a", { href: `#/jobs/${job.id}`, class: "job-link", text: job.id.slice(0, 8) }),
    status,
    el("span", { class: "tasks", text: job.tasks.map((t) => TASK_NAMES[t] || t).join(", ") }),
    el("span", { class: "pages" }, bar, " ", el("span", { class: "progress-text", text: progressText(job.progress) })),
    el("time", { datetime: job.created_at, text: new Date(job.created_at).toLocaleString() }),
  );
}

async function watchListed(jobId, signal) {
  await streamEvents(jobId, (event) => {
    if (event.name === "end") return;
    const item = $(`job-${jobId}`);
    if (item === null) return;
    statusBadge(item.querySelector(".status"), event.data.status);
    if (event.name === "progress") {
      setProgress(item.querySelector("progress"), event.data.data);
      item.querySelector(".progress-text").textContent = progressText(event.data.data);
    }
  }, signal);
  if (signal.aborted) return;
  const job = await apiJson(`/v1/jobs/${jobId}`, { signal }).catch(() => null);
  const item = $(`job-${jobId}`);
  if (job !== null && item !== null && !signal.aborted) item.replaceWith(jobItem(job));
}

function droppedFiles(event) {
  event.preventDefault();
  $("drop-zone").classList.remove("dragging");
  if (event.dataTransfer && event.dataTransfer.files.length) {
    $("files").files = event.dataTransfer.files;
    notice(`${event.dataTransfer.files.length} file(s) ready to submit.`);
  }
}

async function submitDocuments(event) {
  event.preventDefault();
  const error = $("submit-error");
  error.textContent = "";
  const files = Array.from($("files").files);
  const tasks = Array.from(document.querySelectorAll("#submit-form input[name=tasks]:checked")).map((i) => i.value);
  const question = $("question").value.trim();
  const problem = !files.length ? ["Choose at least one document.", "files"]
    : !tasks.length ? ["Pick at least one task.", "submit-form"]
    : tasks.includes("qa") && !question ? ["Question answering needs a question.", "question"]
    : null;
  if (problem !== null) {
    error.textContent = problem[0];
    const target = $(problem[1]);
    (target.tagName === "FORM" ? target.querySelector("input[name=tasks]") : target).focus();
    return;
  }
  $("submit-button").disabled = true;
  const submitted = [];
  try {
    for (const file of files) {
      const form = new FormData();
      form.append("file", file, file.name);
      for (const task of tasks) form.append("tasks", task);
      if (tasks.includes("qa")) form.append("question", question);
      form.append("priority", $("priority").value || "5");
      const job = await apiJson("/v1/jobs", { method: "POST", body: form });
      submitted.push(job);
    }
  } catch (failure) {
    error.textContent = `Not submitted: ${failure.message}`;
  } finally {
    $("submit-button").disabled = false;
  }
  if (submitted.length) {
    $("files").value = "";
    notice(`Submitted ${submitted.length} job(s).`);
    if (submitted.length === 1 && files.length === 1) location.hash = `#/jobs/${submitted[0].id}`;
    else route();
  }
}

// -- one job ----------------------------------------------------------------------------------------

const imageUrls = new Map(); // page image path -> blob: URL, fetched once per tab

async function showJob(jobId, signal) {
  show("job-view");
  document.title = `Job ${jobId.slice(0, 8)} · docvl console`;
  $("job-title").textContent = `Job ${jobId}`;
  $("pages").replaceChildren();
  $("downloads").replaceChildren();
  $("downloads-section").hidden = true;
  $("job-error").textContent = "";
  $("cancel-job").onclick = () => cancelJob(jobId);
  // One load at a time; an event during a load asks for one more after it, so that the page always ends
  // up showing what the last event announced (a load that started before it may not have seen it).
  let pending = null;
  let again = false;
  const refresh = () => {
    if (pending !== null) {
      again = true;
      return pending;
    }
    pending = (async () => {
      let job;
      do {
        again = false;
        job = await loadJob(jobId, signal);
      } while (again && !signal.aborted);
      pending = null;
      return job;
    })();
    return pending;
  };
  const job = await refresh();
  if (signal.aborted || (job && finished(job.status))) return; // a finished job has nothing more to say
  // Every event (the stream starts with the job's history) means: look again. The page shows one
  // consistent view of the job, never an older event's status over a newer load.
  streamEvents(jobId, () => refresh(), signal);
}

async function loadJob(jobId, signal) {
  let view;
  try {
    view = await apiJson(`/v1/jobs/${jobId}/pages`, { signal });
  } catch (error) {
    if (!signal.aborted) notice(`Could not load job ${jobId}: ${error.message}`);
    return;
  }
  if (signal.aborted) return;
  showSummary(view.job);
  showDownloads(jobId, view.outputs);
  $("pages-empty").hidden = view.pages.length > 0;
  // Only pages whose results changed are rebuilt: the others (their frames, their images) stay as they are.
  for (const page of view.pages) {
    const signature = JSON.stringify(page.results);
    const shown = $(`page-${page.page}`);
    if (shown !== null && shown.dataset.signature === signature) continue;
    const section = pageSection(view.job, page);
    section.dataset.signature = signature;
    if (shown === null) $("pages").append(section);
    else shown.replaceWith(section);
  }
  return view.job;
}

function showSummary(job) {
  statusBadge($("job-status"), job.status);
  setProgress($("job-progress"), job.progress);
  $("job-progress-text").textContent = progressText(job.progress);
  const tasks = job.tasks.map((t) => TASK_NAMES[t] || t).join(", ");
  $("job-meta").textContent = `Tasks: ${tasks} · priority ${job.priority} · submitted ${new Date(job.created_at).toLocaleString()}`;
  $("job-error").textContent = job.error ? `${job.error.code}: ${job.error.message}` : "";
  $("cancel-job").disabled = finished(job.status);
}

function showDownloads(jobId, outputs) {
  const items = [];
  for (const [task, files] of Object.entries(outputs)) {
    for (const file of files) {
      const button = el("button", { type: "button", class: "link", text: `${file.name} (${TASK_NAMES[task] || task})` });
      button.addEventListener("click", () => download(jobId, file.name));
      items.push(el("li", {}, button));
    }
  }
  $("downloads").replaceChildren(...items);
  $("downloads-section").hidden = items.length === 0;
}

async function download(jobId, name) {
  try {
    const response = await api(`/v1/jobs/${jobId}/outputs/${encodeURIComponent(name)}`);
    const url = URL.createObjectURL(await response.blob());
    const anchor = el("a", { href: url, download: name });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    notice(`Could not download ${name}: ${error.message}`);
  }
}

async function cancelJob(jobId) {
  try {
    const job = await apiJson(`/v1/jobs/${jobId}/cancel`, { method: "POST" });
    showSummary(job);
    notice(`Job ${jobId.slice(0, 8)} is ${job.status.replace("_", " ")}.`);
  } catch (error) {
    notice(`Could not cancel: ${error.message}`);
  }
}

function pageSection(job, page) {
  const titleId = `page-${page.page}-title`;
  const image = el("img", {
    alt: `Page ${page.page} of the document`, width: String(page.width), height: String(page.height),
  });
  if (imageUrls.has(page.image)) image.src = imageUrls.get(page.image);
  else {
    image.dataset.path = page.image;
    imageObserver.observe(image); // fetched when it comes near the viewport: a long document stays light
  }
  const order = (result) => job.tasks.indexOf(result.task);
  const sorted = [...page.results].sort((a, b) => order(a) - order(b)); // as the job lists its tasks
  const laidOut = sorted.find((result) => result.task === "layout" && result.layout && !result.error);
  const layout = laidOut ? layoutView(page.page, laidOut.layout) : null;
  const results = sorted.map((result) => resultArticle(job, page.page, result, layout));
  if (!results.length) results.push(el("p", { class: "hint", text: "No results for this page yet." }));
  const figure = layout === null
    ? el("figure", { class: "page-image" }, image)
    : el("figure", { class: "page-image layout-figure" },
      el("div", { class: "layout-canvas" }, image, layout.boxes),
      el("figcaption", { class: "hint", text: layout.caption }));
  return el(
    "section", { class: "page", "aria-labelledby": titleId, id: `page-${page.page}` },
    el("h3", { id: titleId, text: `Page ${page.page}` }),
    el("div", { class: "page-grid" }, figure, el("div", { class: "results" }, ...results)),
  );
}

// A page's layout: each block's boxes over the page image (as percentages of it, so they scale with it),
// labelled and coloured by the block's label, and the blocks' text in a list, linked both ways: hovering
// or focusing a box highlights its text and the other way round; Enter on a box takes the focus to its
// text, Enter on a text to its box. The text is the model's: it is only ever set as text.
function layoutView(pageNumber, layout) {
  const boxes = el("div", { class: "layout-boxes" });
  const list = el("ol", { class: "layout-blocks", "aria-label": `Blocks of page ${pageNumber}, in reading order` });
  const drawn = [];
  for (const block of layout.blocks) {
    const label = LABELS.includes(block.label) ? block.label : "other";
    const name = label.replace("_", " ");
    const nameId = `block-${pageNumber}-${block.order}-name`;
    const link = { boxes: [], reasons: new Set() };
    link.item = el("li", {
      class: `layout-block label-${label}`, tabindex: "0", id: `block-${pageNumber}-${block.order}`,
      "aria-labelledby": nameId, "data-block": block.id,
    },
    el("span", { class: "layout-block-name", id: nameId, text: `${block.order}. ${name}` }),
    el("span", { class: "layout-block-text", text: block.text }));
    if (!block.boxes_px.length) link.item.append(el("span", { class: "hint", text: " (no box on the page)" }));
    block.boxes_px.forEach((rect, index) => {
      const box = index === 0
        ? el("button", { type: "button", "aria-label": `Block ${block.order}: ${name}` })
        : el("div", { "aria-hidden": "true" }); // a block's further boxes: one stop per block for the keyboard
      box.className = `layout-box label-${label}`;
      box.dataset.block = block.id;
      box.append(el("span", { class: "layout-box-label", "aria-hidden": "true", text: name }));
      place(box, rect, layout);
      link.boxes.push(box);
      drawn.push([box, (rect[2] - rect[0]) * (rect[3] - rect[1])]);
    });
    linkBlock(link);
    list.append(link.item);
  }
  // The smaller a box, the higher it lies, so that a box inside another can still be pointed at.
  [...drawn].sort((a, b) => b[1] - a[1]).forEach(([box], rank) => { box.style.zIndex = String(rank + 1); });
  boxes.append(...drawn.map(([box]) => box)); // in reading order: the order Tab takes
  const count = layout.blocks.length;
  return {
    boxes,
    list,
    notes: layout.notes,
    caption: `${count} block${count === 1 ? "" : "s"}: point at or focus a box to find its text below or beside.`,
  };
}

function place(box, rect, layout) {
  const percent = (value, whole) => `${Math.min(100, Math.max(0, (100 * value) / whole))}%`;
  const [x0, y0, x1, y1] = rect;
  box.style.left = percent(x0, layout.width_px);
  box.style.top = percent(y0, layout.height_px);
  box.style.width = percent(x1 - x0, layout.width_px);
  box.style.height = percent(y1 - y0, layout.height_px);
}

function linkBlock(link) {
  const mark = (reason, on) => {
    if (on) link.reasons.add(reason);
    else link.reasons.delete(reason);
    for (const node of [link.item, ...link.boxes]) node.classList.toggle("active", link.reasons.size > 0);
  };
  for (const node of [link.item, ...link.boxes]) {
    node.addEventListener("mouseenter", () => mark("pointer", true));
    node.addEventListener("mouseleave", () => mark("pointer", false));
    node.addEventListener("focus", () => mark("focus", true));
    node.addEventListener("blur", () => mark("focus", false));
  }
  if (link.boxes.length) {
    link.boxes[0].addEventListener("click", () => link.item.focus()); // Enter, Space or a click
    link.item.addEventListener("click", () => link.boxes[0].scrollIntoView({ block: "nearest" }));
    link.item.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      link.boxes[0].focus();
    });
  }
}

const imageObserver = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    imageObserver.unobserve(entry.target);
    showImage(entry.target, entry.target.dataset.path, viewAbort.signal);
  }
}, { rootMargin: "1000px 0px" });

// Images need the API key, so they are fetched here and shown from blob: URLs (the policy allows those).
async function showImage(image, path, signal) {
  let url = imageUrls.get(path);
  if (url === undefined) {
    try {
      url = URL.createObjectURL(await (await api(path, { signal })).blob());
    } catch (_) {
      return;
    }
    imageUrls.set(path, url);
  }
  image.src = url;
}

function resultArticle(job, pageNumber, result, layout) {
  const name = TASK_NAMES[result.task] || result.task;
  const article = el("article", { class: `result result-${result.task}`, "data-task": result.task },
    el("h4", { text: name }));
  const facts = [
    ["Model", result.model_id || "—"],
    ["Revision", result.model_revision || "—"],
    ["Prompt version", result.prompt_template_version || "—"],
    ["Tokens", String(result.generated_tokens)],
  ];
  if (result.valid === false) facts.push(["Check", `did not pass: ${result.problem || "invalid"}`]);
  const meta = el("dl", { class: "meta" });
  for (const [term, value] of facts) meta.append(el("div", {}, el("dt", { text: term }), el("dd", { text: value })));
  article.append(meta);
  if (result.error) {
    article.append(el("p", { class: "error", text: `${result.error.code}: ${result.error.message}` }));
    return article;
  }
  if (result.task === "qa" && job.question) {
    article.append(el("p", { class: "question" }, el("strong", { text: "Q: " }), job.question));
  }
  if (result.task === "layout") {
    article.append(...layoutBody(result, layout));
    return article;
  }
  article.append(resultBody(pageNumber, result));
  return article;
}

function layoutBody(result, layout) {
  if (layout === null) {
    return [el("p", { class: "hint", text: "The blocks appear here once this page's layout is stored." })];
  }
  const shown = [layout.list];
  if (layout.notes.length) {
    shown.push(el("details", { class: "layout-notes" },
      el("summary", { text: `What the parser changed (${layout.notes.length})` }),
      el("ul", {}, ...layout.notes.map((note) => el("li", { text: note })))));
  }
  return shown;
}

function resultBody(pageNumber, result) {
  if (result.task === "web2html") {
    // An inert copy of the page: no scripts (sandbox without allow-scripts), an opaque origin (without
    // allow-same-origin), and a document whose policy loads nothing.
    const frame = el("iframe", {
      sandbox: "", referrerpolicy: "no-referrer", class: "web-preview",
      title: `Page ${pageNumber}: the webpage as HTML (preview, scripts off)`,
    });
    if (result.preview) frame.src = result.preview; // with the page's CSS, under the preview's own policy
    else frame.srcdoc = result.html;
    return frame;
  }
  if (result.task === "chart2code") {
    const code = el("code", { class: "language-python" });
    code.innerHTML = result.html; // highlighted by Pygments on the server: escaped text in spans
    return el("pre", { class: "code", tabindex: "0", "aria-label": `Page ${pageNumber}: chart as Python code` }, code);
  }
  const body = el("div", { class: "markdown" });
  body.innerHTML = result.html; // rendered with raw HTML off and sanitised (allow-list) on the server
  return body;
}

// -- start ------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("submit-form").addEventListener("submit", submitDocuments);
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", droppedFiles);
  window.addEventListener("hashchange", () => {
    route();
    if (apiKey()) $("main").focus(); // keyboard and screen reader users start at the new view's top
  });
  route();
});
