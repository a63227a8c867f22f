// The collection dashboard: reads the plugin's API (api/minute-status, api/heatmap) for one date and
// venue, Airflow's REST API for the run latencies, and api/archive-progress when its section opens,
// with the login cookie the Airflow UI already set. URLs are relative, so the page works under any base path the API server is given. Every time
// shown is KST and says so, whatever the browser's time zone: the API's times carry their +09:00
// offset, and the page formats them, and its own clock, in Asia/Seoul.
"use strict";

const COLORS = { c: "#2f9e44", a: "#74c0fc", m: "#e03131", b: "#b197fc", f: "#e9ecef" };
// The legend's words for the API's cell states, and what each means (the legend's tooltips).
const LEGEND = {
  c: ["collected", "a bar is stored"],
  a: ["expected absence", "no bar, and the day's verification explained it: the minute volumes add up (a VI, a halt, no trade)"],
  m: ["missing", "no bar although a minute run could have fetched it (alerted), or the day's verification found it missing"],
  b: ["before collection began", "no bar, before the day's first minute run could reach (a start in the middle of the session): never alerted, the backfill fetches and verifies it after the close"],
  f: ["not yet", "not due yet"],
};
const LABEL_WIDTH = 64;
const AXIS_HEIGHT = 18;
const ROW_HEIGHT = 12;
// Room after the last column for the closing bar's axis label.
const RIGHT_MARGIN = 32;
const REFRESH_MS = 30000;
const RUNS_SHOWN = 60;

const $ = (id) => document.getElementById(id);
const dateInput = $("date");
const calendarInput = $("calendar");
const venueInput = $("venue");
let heatmapData = null;
let refreshTimer = null;

const KST_PARTS = new Intl.DateTimeFormat("en-CA", {
  timeZone: "Asia/Seoul", year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

function kstParts(moment) {
  // {date: "YYYY-MM-DD", time: "HH:MM:SS"} of a Date in KST.
  const p = Object.fromEntries(KST_PARTS.formatToParts(moment).map((part) => [part.type, part.value]));
  return { date: p.year + "-" + p.month + "-" + p.day, time: p.hour + ":" + p.minute + ":" + p.second };
}

function nextDay(day) {
  // "YYYY-MM-DD" of the calendar day after ``day``.
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
}

function kst(iso, day) {
  // "HH:MM:SS KST" of an ISO time with its offset; with its date when that is not ``day``.
  if (!iso) return "–";
  const parts = kstParts(new Date(iso));
  return (parts.date === day ? "" : parts.date + " ") + parts.time + " KST";
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401 || response.status === 403) {
    throw new Error("Not logged in to Airflow (HTTP " + response.status + "): open the dashboard from the Airflow UI.");
  }
  if (!response.ok) {
    let detail = "";
    try { detail = (await response.json()).detail || ""; } catch (_) { /* not JSON */ }
    // FastAPI's validation errors (422) are a list of {loc, msg}.
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
    throw new Error(url.split("?")[0] + ": HTTP " + response.status + (detail ? ", " + detail : ""));
  }
  return response.json();
}

function text(id, value) { $(id).textContent = value; }
function percent(value) {
  // Three decimals, truncated as the API's: 97.9996 % must not read "98 %", a pass, against 98 %.
  if (value === null || value === undefined) return "–";
  return Math.floor(Math.round(value * 1e6) / 1e3) / 1000 + " %";
}
function count(value) { return Number(value).toLocaleString("en-US"); }
// HH:MM of a bar's time ("2026-11-25T09:00:00+09:00", KST): the texts and columns showing it say KST.
function clock(iso) { return iso ? iso.slice(11, 16) : "–"; }

function cell(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

// The code's bars of the day and venue shown, as CSV from api/bars: the minute bars and each interval.
function barsLinks(code, status) {
  const td = cell("td", "", "bars-out");
  for (const interval of [1, 5, 10, 30, 60]) {
    const link = cell("a", interval + "m");
    link.href = "api/bars?" + new URLSearchParams({ code, date: status.date, venue: status.venue, interval, format: "csv" });
    link.title = code + ", " + status.date + ", " + interval + "-minute bars (CSV)";
    td.append(link, " ");
  }
  return td;
}

function alertMessage(message) {
  // The day's verification alert carries its whole report after the first line: folded away.
  const [first, ...rest] = message.split("\n");
  const td = cell("td", first);
  if (rest.length) {
    const details = document.createElement("details");
    details.append(cell("summary", "report"), cell("pre", rest.join("\n")));
    td.append(details);
  }
  return td;
}

function renderStatus(status) {
  text("rate", percent(status.collection_rate));
  text("rate-detail", count(status.today_total) + " of " + count(status.expected_total) + " expected bars"
    + (status.session ? " (" + status.session.bars_per_code + " per code)" : ", no session on this date"));
  text("codes", status.stock_count + " / " + status.codes.length);
  text("codes-detail", status.first_time
    ? "first bar " + clock(status.first_time) + ", last " + clock(status.last_time) + " KST"
    : status.session ? "no bar yet" : "no session on this date");

  const byStatus = {};
  for (const code of status.codes) {
    const key = code.verification ? code.verification.status : "not verified";
    byStatus[key] = (byStatus[key] || 0) + 1;
  }
  const short = { complete: "complete", complete_with_explained_absences: "explained", unverifiable: "unverifiable", gap: "gap", no_data: "no data", "not verified": "not verified" };
  text("verification", Object.keys(short).filter((k) => byStatus[k]).map((k) => byStatus[k] + " " + short[k]).join(", ") || "–");
  const checked = status.codes.map((c) => c.verification && c.verification.checked_at).filter(Boolean).sort();
  text("verification-detail", checked.length ? "checked " + kst(checked[checked.length - 1], status.date) : "the backfill verifies after the close");

  const alerts = $("alerts").tBodies[0];
  alerts.replaceChildren();
  for (const alert of status.alerts) {
    // A resolved alert stays, greyed, with when (and, on hover, which run) a later fetch or
    // verification settled it.
    const row = document.createElement("tr");
    const state = cell("td", alert.resolved_at ? "resolved " + kst(alert.resolved_at, status.date) : "open");
    if (alert.resolved_at) {
      row.className = "resolved";
      state.title = "by " + alert.resolved_by;
    }
    row.append(cell("td", kst(alert.raised_at, status.date)), cell("td", alert.kind),
      cell("td", alert.stock_code || ""), alertMessage(alert.message), state);
    alerts.append(row);
  }
  if (!status.alerts.length) {
    const row = document.createElement("tr");
    const empty = cell("td", "No alerts for this date.", "muted");
    empty.colSpan = 5;
    row.append(empty);
    alerts.append(row);
  }

  const perCode = $("per-code").tBodies[0];
  perCode.replaceChildren();
  // The API lists them least complete first.
  for (const code of status.codes) {
    const row = document.createElement("tr");
    const verification = code.verification ? code.verification.status : "";
    row.append(cell("td", code.stock_code), cell("td", count(code.bars), "num"), cell("td", count(code.expected), "num"),
      cell("td", percent(code.completeness), "num"), cell("td", clock(code.first_time)), cell("td", clock(code.last_time)),
      cell("td", verification.replaceAll("_", " "), "status-" + verification), barsLinks(code.stock_code, status));
    perCode.append(row);
  }
}

function renderLegend(states) {
  const legend = $("legend");
  legend.replaceChildren();
  for (const [key, name] of Object.entries(states)) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLORS[key];
    const [words, meaning] = LEGEND[key] || [name.replaceAll("_", " "), ""];
    item.append(swatch, words);
    item.title = meaning;
    item.dataset.state = key;
    legend.append(item);
  }
}

function heatmapGeometry(data) {
  const available = Math.max(600, $("heatmap-box").clientWidth) - LABEL_WIDTH - RIGHT_MARGIN;
  const cellWidth = Math.max(2, Math.floor(available / Math.max(1, data.minutes.length)));
  return {
    cellWidth,
    width: LABEL_WIDTH + cellWidth * data.minutes.length + RIGHT_MARGIN,
    height: AXIS_HEIGHT + ROW_HEIGHT * data.rows.length,
  };
}

function renderHeatmap(data) {
  heatmapData = data;
  renderLegend(data.states);
  const canvas = $("heatmap");
  const { cellWidth, width, height } = heatmapGeometry(data);
  const scale = window.devicePixelRatio || 1;
  canvas.width = width * scale;
  canvas.height = height * scale;
  canvas.style.width = width + "px";
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillStyle = "#6c757d";
  ctx.textBaseline = "middle";
  data.minutes.forEach((minute, i) => {
    // Hour marks on the axis; the closing bar gets its own label.
    if (minute.endsWith(":00") || i === data.minutes.length - 1) {
      ctx.fillText(minute, LABEL_WIDTH + i * cellWidth, AXIS_HEIGHT / 2);
    }
  });
  data.rows.forEach((row, r) => {
    const y = AXIS_HEIGHT + r * ROW_HEIGHT;
    ctx.fillStyle = "#212529";
    ctx.fillText(row.stock_code, 0, y + ROW_HEIGHT / 2);
    for (let i = 0; i < row.cells.length; i++) {
      ctx.fillStyle = COLORS[row.cells[i]];
      ctx.fillRect(LABEL_WIDTH + i * cellWidth, y + 1, Math.max(1, cellWidth - (cellWidth > 3 ? 1 : 0)), ROW_HEIGHT - 2);
    }
  });

  const counts = { c: 0, a: 0, m: 0, b: 0, f: 0 };
  for (const row of data.rows) for (const state of row.cells) counts[state] += 1;
  // The minutes before collection began were never due to the minute runs: counted apart, as the
  // backfill's, not as missing.
  const due = counts.c + counts.a + counts.m;
  text("due", due ? percent(100 * (counts.c + counts.a) / due) : "–");
  const before = counts.b ? count(counts.b) + " before collection began, the backfill's" : "";
  text("due-detail", (due ? count(counts.m) + " missing of " + count(due) + " due cells" + (counts.a ? ", " + count(counts.a) + " explained" : "")
    : "nothing due yet") + (before ? "; " + before : ""));
  text("heatmap-note", data.session
    ? data.rows.length + " codes × " + data.minutes.length + " bars; hover a cell for its minute. Generated " + kst(data.generated_at, data.date) + "."
    : "No " + venueInput.selectedOptions[0].textContent + " session on " + data.date + ": nothing is expected.");
}

function showTip(event) {
  const tip = $("tip");
  if (!heatmapData) return;
  const { cellWidth } = heatmapGeometry(heatmapData);
  const rect = $("heatmap").getBoundingClientRect();
  const x = event.clientX - rect.left - LABEL_WIDTH;
  const r = Math.floor((event.clientY - rect.top - AXIS_HEIGHT) / ROW_HEIGHT);
  const i = Math.floor(x / cellWidth);
  const row = heatmapData.rows[r];
  if (x < 0 || !row || i < 0 || i >= row.cells.length) { tip.hidden = true; return; }
  tip.textContent = row.stock_code + " " + heatmapData.minutes[i] + " KST: " + LEGEND[row.cells[i]][0];
  tip.style.left = (event.clientX - rect.left + 12) + "px";
  tip.style.top = (event.clientY - rect.top + 12) + "px";
  tip.hidden = false;
}

function svg(tag, attributes) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function renderLatency(runs, deadline, day, now) {
  // ``now``: the server's clock (ms), which the runs' times are on, not the browser's.
  const box = $("latency");
  box.replaceChildren();
  const points = runs.reverse().map((run) => {
    const end = run.end_date ? Date.parse(run.end_date) : now;
    return { run, seconds: Math.max(0, (end - Date.parse(run.run_after)) / 1000), running: !run.end_date };
  });
  if (!points.length) {
    text("latency-note", "No runs of " + document.body.dataset.dagId + " on " + day + ".");
    return;
  }
  const width = 600, height = 180, left = 36, bottom = 16;
  // The axis stops at three deadlines: one run that waited an hour (a paused DAG, a backlog) must
  // not flatten the others. Its bar is clipped; its tooltip has the real figure.
  const top = Math.min(deadline * 3, Math.max(deadline * 1.2, ...points.map((p) => p.seconds)));
  const y = (seconds) => height - bottom - (height - bottom - 6) * Math.min(seconds, top) / top;
  const barWidth = (width - left) / RUNS_SHOWN;
  const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, preserveAspectRatio: "none", role: "img" });
  for (const tick of [0, deadline]) {
    chart.append(svg("line", { x1: left, x2: width, y1: y(tick), y2: y(tick), stroke: tick ? "#e03131" : "#adb5bd", "stroke-dasharray": tick ? "4 3" : "" }));
    const label = svg("text", { x: 0, y: y(tick) + 4, "font-size": 11, fill: "#6c757d" });
    label.textContent = tick + " s";
    chart.append(label);
  }
  points.forEach((point, i) => {
    const color = point.running ? "#adb5bd" : point.run.state === "success" ? (point.seconds > deadline ? "#f08c00" : "#2f9e44") : "#e03131";
    const bar = svg("rect", { x: left + i * barWidth + 1, y: y(point.seconds), width: Math.max(1, barWidth - 2), height: y(0) - y(point.seconds), fill: color });
    const title = svg("title", {});
    title.textContent = kst(point.run.run_after, day) + ": " + point.seconds.toFixed(1) + " s, " + point.run.state;
    bar.append(title);
    chart.append(bar);
  });
  box.append(chart);
  const finished = points.filter((p) => !p.running).map((p) => p.seconds).sort((a, b) => a - b);
  const median = finished.length ? finished[Math.floor(finished.length / 2)] : null;
  text("latency-note", points.length + " latest runs of " + day + ", from their tick to their end; median "
    + (median === null ? "–" : median.toFixed(1) + " s") + ", deadline " + deadline + " s (dashed).");
}

function runsOfDay(dagId, day) {
  // The latest runs of ``day`` (KST). The "~" form lists runs of every DAG the user may read,
  // filtered by id: it answers 200 with an empty list before the DAG was ever parsed, where
  // /dags/<id>/dagRuns would answer 404.
  return "../api/v2/dags/~/dagRuns?dag_id_pattern=" + encodeURIComponent(dagId)
    + "&run_after_gte=" + encodeURIComponent(day + "T00:00:00+09:00")
    + "&run_after_lt=" + encodeURIComponent(nextDay(day) + "T00:00:00+09:00")
    + "&order_by=-run_after&limit=" + RUNS_SHOWN;
}

async function loadLatency(day, now) {
  const dagId = document.body.dataset.dagId;
  try {
    const body = await getJson(runsOfDay(dagId, day));
    renderLatency(body.dag_runs.filter((run) => run.dag_id === dagId), Number(document.body.dataset.runDeadline), day, now);
  } catch (error) {
    $("latency").replaceChildren();
    text("latency-note", "Run latencies unavailable: " + error.message);
  }
}

function span(ms) {
  // "3 days 4 h 40 min" of a duration, to the minute.
  const minutes = Math.floor(ms / 60000);
  const parts = [[Math.floor(minutes / 1440), " days"], [Math.floor(minutes / 60) % 24, " h"], [minutes % 60, " min"]];
  return parts.filter(([n], i) => n || i === 2).map(([n, unit]) => n + unit).join(" ");
}

async function loadRunsAhead(now) {
  // Runs of the collection's DAGs dated ahead of the server's clock: Airflow starts none of their
  // tasks before their logical date, and each holds its DAG's one active run meanwhile. The trigger
  // refuses them (kis.timetable); one made another way (a data interval given by hand, a clock set
  // back) is named here, with the way out.
  const box = $("ahead");
  const lead = Number(document.body.dataset.manualRunLead) * 1000;
  const url = "../api/v2/dags/~/dagRuns?dag_id_pattern=kis_&state=queued&state=running&limit=20"
    + "&logical_date_gte=" + encodeURIComponent(new Date(now + lead).toISOString());
  let runs = [];
  try {
    runs = (await getJson(url)).dag_runs.filter((run) => run.dag_id.startsWith("kis_") && run.logical_date);
  } catch (_) {
    // Airflow's API unreachable: the latency panel says so; the page's own figures stand.
  }
  box.replaceChildren(...runs.map((run) => cell("p", run.dag_id + " " + run.dag_run_id + ": its logical date, "
    + kst(run.logical_date, "") + ", is " + span(Date.parse(run.logical_date) - now) + " ahead of the server's clock."
    + " Airflow starts none of its tasks before then, and it holds the DAG's one active run: the DAG's other runs"
    + " wait behind it. Mark it failed (or delete it) and trigger again with the logical date cleared.")));
  box.hidden = !runs.length;
}

function duration(seconds) {
  // "3 h 20 min" of a whole number of seconds; "–" when there is no rate to divide by.
  if (seconds === null || seconds === undefined) return "–";
  const hours = Math.floor(seconds / 3600), minutes = Math.ceil((seconds % 3600) / 60);
  return hours ? hours + " h " + minutes + " min" : minutes + " min";
}

function renderArchive(progress) {
  const total = progress.total;
  const selection = progress.selection;
  text("archive-summary", count(total.archived) + " of " + count(total.expected) + " code-days archived on "
    + progress.venue + " (" + progress.from + " to " + progress.to + ", markets " + (selection.markets || ["all"]).join(", ")
    + ", groups " + (selection.groups || ["all"]).join(", ") + "): " + count(total.remaining_requests)
    + " requests left, " + duration(total.estimated_seconds) + " at " + progress.requests_per_second
    + " requests/s on " + progress.keys + " real-account key" + (progress.keys === 1 ? "" : "s") + ".");
  const body = $("archive-months").tBodies[0];
  body.replaceChildren(...progress.months.map((month) => {
    const row = document.createElement("tr");
    const share = month.expected ? 100 * month.archived / month.expected : null;
    const unknown = month.sessions_without_universe;
    row.append(
      cell("td", month.month),
      cell("td", month.sessions + (unknown ? " (" + unknown + " without a universe)" : ""), "num"),
      cell("td", count(month.archived), "num"),
      cell("td", count(month.expected), "num"),
      cell("td", percent(share), "num"),
      cell("td", count(month.remaining_requests), "num"),
      cell("td", duration(month.estimated_seconds), "num"),
    );
    return row;
  }));
  const notes = ["A session's codes are its universe's (kis_universe; a day before the first load takes the first"
    + " universe loaded after it); a code KIS does not know, or the venue does not trade, is left out."
    + " Requests at the cheapest endpoint KIS serves for each day: 5 a past KRX code-day, 7 a Nextrade one,"
    + " 13 on KIS's today."];
  if (progress.rate_problem) notes.push("Rate: " + progress.rate_problem + ".");
  text("archive-note", notes.join(" "));
}

async function loadArchive() {
  if (!$("archive").open) return;
  try {
    renderArchive(await getJson("api/archive-progress?venue=" + encodeURIComponent(venueInput.value)));
  } catch (error) {
    text("archive-summary", error.message);
  }
}

async function load() {
  // No date chosen: the server's today (KST), which its answer names; the browser's clock may be
  // another day's (a replayed session, a skewed clock).
  const query = "?" + (dateInput.value ? "date=" + encodeURIComponent(dateInput.value) + "&" : "")
    + "venue=" + encodeURIComponent(venueInput.value);
  document.body.dataset.state = "loading";
  let following = false;
  try {
    const [status, heatmap] = await Promise.all([getJson("api/minute-status" + query), getJson("api/heatmap" + query)]);
    dateInput.value = status.date;
    const serverNow = Date.parse(heatmap.generated_at);
    following = kstParts(new Date(serverNow)).date === status.date;
    renderStatus(status);
    renderHeatmap(heatmap);
    await Promise.all([loadLatency(status.date, serverNow), loadRunsAhead(serverNow)]);
    $("error").hidden = true;
    text("updated", "updated " + kstParts(new Date(serverNow)).time + " KST");
    document.body.dataset.state = "ready";
  } catch (error) {
    $("error").textContent = error.message;
    $("error").hidden = false;
    document.body.dataset.state = "error";
  }
  clearTimeout(refreshTimer);
  // Only today changes by itself; a past date is reloaded when the user asks.
  if (following) refreshTimer = setTimeout(load, REFRESH_MS);
}

function start() {
  const requested = new URLSearchParams(window.location.search).get("date");
  dateInput.value = requested || "";
  const venue = new URLSearchParams(window.location.search).get("venue");
  if ([...venueInput.options].some((option) => option.value === venue)) venueInput.value = venue;
  const applyChoice = () => {
    // A date the field's pattern refuses (11/24/2026) is said at the field, not sent.
    if (!dateInput.reportValidity()) return;
    const url = new URL(window.location.href);
    if (dateInput.value) url.searchParams.set("date", dateInput.value);
    else url.searchParams.delete("date");
    url.searchParams.set("venue", venueInput.value);
    history.replaceState(null, "", url);
    load();
  };
  dateInput.addEventListener("change", applyChoice);
  venueInput.addEventListener("change", applyChoice);
  venueInput.addEventListener("change", loadArchive);
  $("pick").addEventListener("click", () => {
    calendarInput.value = dateInput.value;
    calendarInput.showPicker();
  });
  calendarInput.addEventListener("change", () => {
    dateInput.value = calendarInput.value;
    applyChoice();
  });
  $("today").addEventListener("click", () => { dateInput.value = ""; dateInput.dispatchEvent(new Event("change")); });
  $("refresh").addEventListener("click", load);
  // The archive's progress moves by the day and costs ~1 s of the database for a year of the whole
  // market: loaded when opened, on Refresh and for another venue, not every 30 s with the page.
  $("refresh").addEventListener("click", loadArchive);
  $("archive").addEventListener("toggle", loadArchive);
  $("heatmap").addEventListener("mousemove", showTip);
  $("heatmap").addEventListener("mouseleave", () => { $("tip").hidden = true; });
  window.addEventListener("resize", () => { if (heatmapData) renderHeatmap(heatmapData); });
  load();
}

start();
