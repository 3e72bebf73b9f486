// twcmaster's page: fills itself from the daemon's live feed (/events, Server-Sent Events),
// draws the last 24 h (/api/v1/history, then the feed's newest point) as SVG, and posts each
// control to the HTTP API's own endpoints, showing a refusal next to the field it names.
// No library, no build step; everything comes from this server (the page's CSP allows
// nothing else).
"use strict";

const DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const DAY_MS = 24 * 3600 * 1000;
const GAP_S = 300; // a longer gap between points breaks the chart's line (daemon stopped)
const TWC_COLOURS = ["#1e88e5", "#43a047", "#e53935", "#00acc1", "#8e24aa", "#6d4c41"];
const NON_SCHEDULED = { 1: "charge at a fixed rate", 2: "do not charge", 3: "track green energy" };

let lastMessageMs = 0;
let updateEverySeconds = 1;
let downSinceMs = null;
let formsFilled = false;
let history = [];
let source = null;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------- formatting

function watts(w) {
  if (w === null || w === undefined) return "–";
  return Math.abs(w) >= 1000 ? `${(w / 1000).toFixed(2)} kW` : `${Math.round(w)} W`;
}

function amps(a) {
  if (a === null || a === undefined) return "–";
  return `${Number(a).toFixed(Number.isInteger(a) ? 0 : 2)} A`;
}

function clock(epochSeconds, withSeconds) {
  const options = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (withSeconds) options.second = "2-digit";
  return new Date(epochSeconds * 1000).toLocaleTimeString([], options);
}

function minutesText(hour) {
  const minutes = Math.round(hour * 60);
  return `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

// ---------------------------------------------------------------------------- the feed

function connect() {
  source = new EventSource("/events");
  source.addEventListener("snapshot", (event) => {
    lastMessageMs = Date.now();
    showUp();
    render(JSON.parse(event.data));
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) {
      showDown(); // the browser reconnects by itself
      return;
    }
    // Refused (a login that ended?) or not an event stream: find out, try again later.
    fetch("/api/v1/history", { credentials: "same-origin" })
      .then((answer) => (answer.status === 401 ? showLoggedOut() : showDown()))
      .catch(showDown);
    setTimeout(connect, 5000);
  };
}

function watchdog() {
  const silentMs = Date.now() - lastMessageMs;
  if (lastMessageMs && silentMs > (3 * updateEverySeconds + 2) * 1000) showDown();
}

function showDown() {
  if (downSinceMs === null) downSinceMs = lastMessageMs || Date.now();
  const since = new Date(downSinceMs).toLocaleTimeString();
  const banner = $("down");
  setText(banner, `The daemon is not answering (nothing since ${since}); what you see may be out of date. Retrying…`);
  banner.hidden = false;
  $("main").classList.add("stale");
  setText($("connection"), "Not connected");
}

function showLoggedOut() {
  const banner = $("down");
  setText(banner, "This browser is no longer logged in (the token changed?): reload the page to log in.");
  banner.hidden = false;
  $("main").classList.add("stale");
}

function showUp() {
  downSinceMs = null;
  $("down").hidden = true;
  $("main").classList.remove("stale");
}

// ---------------------------------------------------------------------------- rendering

function render(data) {
  const snap = data.snapshot;
  updateEverySeconds = data.update_every_s || 1;
  $("logout").hidden = !data.login_required;
  setText($("connection"), `Live · ${clock(snap.time_epoch, true)}`);
  renderAlarms(data.alarms);
  renderSite(snap);
  renderTwcs(data, snap);
  renderCurrent(snap);
  if (!formsFilled && snap.settings) {
    fillForms(snap.settings);
    setRanges(data.wiring_max_amps);
    formsFilled = true;
  }
  if (data.newest_point) addPoint(data.newest_point, snap.time_epoch);
}

function renderAlarms(alarms) {
  $("alarms").hidden = alarms.length === 0;
  const list = $("alarm-list");
  const text = alarms.join("\n");
  if (list.dataset.text === text) return;
  list.dataset.text = text;
  list.replaceChildren(...alarms.map((a) => Object.assign(document.createElement("li"), { textContent: a })));
}

function energy(snap) {
  if (snap.green) return snap.green;
  if (snap.site) return { ...snap.site, surplus_w: snap.site.generation_w - snap.site.consumption_w };
  return null;
}

function renderSite(snap) {
  const e = energy(snap);
  setText($("generation"), e ? watts(e.generation_w) : "no source");
  setText($("consumption"), e ? watts(e.consumption_w) : "no source");
  setText($("surplus"), e ? watts(e.surplus_w) : "–");
  setText($("budget"), amps(snap.budget.amps));
  const forced = snap.settings && snap.settings.forced_policy;
  setText($("policy"), snap.budget.policy + (forced ? " (chosen by hand)" : ""));
  setText($("reason"), `Why ${amps(snap.budget.amps)}: ${snap.budget.reason}`);
}

function renderTwcs(data, snap) {
  const box = $("twcs");
  $("no-twcs").hidden = snap.slaves.length > 0;
  const seen = new Set();
  const denied = new Set((snap.settings && snap.settings.denied_twcids) || []);
  for (const slave of snap.slaves) {
    seen.add(slave.twcid);
    let card = box.querySelector(`[data-twcid="${slave.twcid}"]`);
    if (!card) {
      card = $("twc-card").content.firstElementChild.cloneNode(true);
      card.dataset.twcid = slave.twcid;
      card.querySelector("[data-action=allow]").addEventListener("click", () => toggleAllowed(card));
      card.querySelector("[data-action=priority]").addEventListener("click", () => setPriority(card));
      box.append(card);
    }
    fillCard(card, slave, data, snap, denied.has(slave.twcid));
  }
  for (const card of box.querySelectorAll("[data-twcid]")) {
    if (!seen.has(card.dataset.twcid)) card.remove();
  }
}

function stateWords(slave, denied) {
  if (denied) return "switched off by hand";
  if (slave.state === 0) return "no car plugged in";
  if (slave.car_charging) return "charging";
  return slave.state_name;
}

function fillCard(card, slave, data, snap, denied) {
  const show = (name, text) => setText(card.querySelector(`[data-show="${name}"]`), text);
  card.classList.toggle("charging", slave.car_charging);
  show("title", `TWC ${slave.twcid}`);
  show("state", stateWords(slave, denied));
  show("offer", amps(slave.offer_amps));
  show("limit", amps(slave.allowed_amps));
  show("drawn", amps(slave.actual_amps));
  const session = data.session_kwh[slave.twcid];
  show("session", session === undefined ? "–" : `${session.toFixed(2)} kWh`);
  show("lifetime", slave.lifetime_kwh === null ? "–" : `${slave.lifetime_kwh} kWh`);
  const volts = (slave.voltages_v || []).filter((v) => v > 0);
  show("voltage", volts.length ? `${volts.join(" / ")} V` : "–");
  const vin = slave.vin || slave.last_vin;
  const car = vin && snap.cars ? snap.cars.cars.find((c) => c.vin === vin) : null;
  let carText = slave.vin ? `Car: ${slave.vin}` : slave.last_vin ? `Last car: ${slave.last_vin}` : "Car: not identified";
  if (car && car.name) carText += ` (${car.name})`;
  show("car", carText);
  show("carapi", carApiText(car, snap.cars));
  show("why", slave.offer_reason ? `Offer: ${slave.offer_reason}` : "");
  show("priority", `Priority ${slave.priority}: when the sun is short, higher charges first`);
  card.querySelector("[data-input=priority]").placeholder = String(slave.priority);
  const button = card.querySelector("[data-action=allow]");
  button.dataset.allowed = denied ? "false" : "true";
  setText(button, denied ? "Allow charging" : "Switch charging off");
}

function carApiText(car, cars) {
  if (!cars) return "";
  if (!car) return `Car API: ${cars.state}${cars.message ? ` (${cars.message})` : ""}`;
  const parts = [`Car API: ${car.online}`];
  if (car.charging_state) parts.push(car.charging_state);
  if (car.battery_level !== null) parts.push(`battery ${car.battery_level}%`);
  if (car.last_command) parts.push(`last ${car.last_command}: ${car.last_result}`);
  return parts.join(", ");
}

function renderCurrent(snap) {
  const s = snap.settings;
  if (!s) return;
  const current = (name) => document.querySelector(`[data-current="${name}"]`);
  const now = snap.time_epoch;
  setText(current("charge-now"), s.charge_now_amps > 0 && s.charge_now_end_epoch > now
    ? `On: ${amps(s.charge_now_amps)} until ${clock(s.charge_now_end_epoch)}`
    : "Off");
  setText(current("policy"), s.forced_policy ? `Forced: ${s.forced_policy}` : "Auto: the rules decide");
  const w = s.schedule[0];
  setText(current("schedule"), w && w.amps > 0 && w.startHour >= 0
    ? `${minutesText(w.startHour)}–${minutesText(w.endHour)} at ${amps(w.amps)}`
    : "Off");
  const rate = s.non_scheduled_amps_max === null ? "" : ` (fixed rate ${amps(s.non_scheduled_amps_max)})`;
  setText(current("non-scheduled"), `Now: ${NON_SCHEDULED[s.non_scheduled_action] || "?"}${rate}`);
  renderOffsets(s.consumption_offsets);
}

function renderOffsets(offsets) {
  const list = $("offset-list");
  const text = JSON.stringify(offsets);
  if (list.dataset.text === text) return;
  list.dataset.text = text;
  const items = Object.entries(offsets).map(([name, o]) => {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = `${name}: ${o.value} ${o.unit}`;
    const remove = Object.assign(document.createElement("button"), { type: "button", textContent: "Delete" });
    remove.className = "secondary";
    remove.setAttribute("aria-label", `Delete the offset ${name}`);
    remove.addEventListener("click", () => send($("offsets"), "/api/deleteConsumptionOffset", { offsetName: name }));
    item.append(label, remove);
    return item;
  });
  list.replaceChildren(...items);
}

function fillForms(s) {
  const cn = $("charge-now");
  if (s.charge_now_amps > 0) cn.elements.chargeNowRate.value = s.charge_now_amps;
  $("policy-select").value = s.forced_policy || "Auto";
  const w = s.schedule[0];
  const sc = $("schedule");
  sc.elements.enabled.checked = Boolean(w && w.amps > 0 && w.startHour >= 0);
  if (w && w.startHour >= 0) {
    sc.elements.startingMinute.value = minutesText(w.startHour);
    sc.elements.endingMinute.value = minutesText(w.endHour);
  }
  if (w) sc.elements.amps.value = w.amps || "";
  DAYS.forEach((day, i) => { sc.elements[day].checked = Boolean(w && w.daysBitmap & (1 << i)); });
  const ns = $("non-scheduled");
  ns.elements.action.value = String(s.non_scheduled_action);
  if (s.non_scheduled_amps_max !== null) ns.elements.amps.value = s.non_scheduled_amps_max;
}

function setRanges(maxAmps) {
  // Hints only: the daemon checks every value (the browser's own checks are off).
  $("cn-amps").placeholder = `1 to ${maxAmps}`;
  $("sc-amps").placeholder = `1 to ${maxAmps}`;
  $("ns-amps").placeholder = `0 to ${maxAmps}`;
}

// ---------------------------------------------------------------------------- the chart

function addPoint(point, nowEpoch) {
  const last = history[history.length - 1];
  if (last && point.t <= last.t) return;
  history.push(point);
  drawChart(nowEpoch);
}

async function loadHistory() {
  try {
    const answer = await fetch("/api/v1/history", { credentials: "same-origin" });
    if (!answer.ok) return;
    const data = await answer.json();
    const newer = history.filter((p) => !data.points.length || p.t > data.points[data.points.length - 1].t);
    history = data.points.concat(newer);
    drawChart(data.now_epoch);
  } catch (error) {
    // The feed's watchdog says the daemon is down; the chart fills from the feed later.
  }
}

function series(twcids) {
  const out = [
    { name: "Generation", colour: "var(--gen)", value: (p) => p.gen },
    { name: "Consumption", colour: "var(--use)", value: (p) => p.use },
  ];
  twcids.forEach((twcid, i) => out.push({
    name: `TWC ${twcid} charging`, colour: TWC_COLOURS[i % TWC_COLOURS.length], value: (p) => (twcid in p.twc ? p.twc[twcid] : null),
  }));
  return out;
}

let chartNowEpoch = null;

function drawChart(nowEpoch) {
  chartNowEpoch = nowEpoch;
  // Drawn at the box's own width, so the labels keep their size on a phone.
  const width = Math.max(300, Math.round($("chart").clientWidth || 720));
  const height = Math.round(Math.min(300, Math.max(200, width * 0.4)));
  const left = 44, right = 8, top = 8, bottom = 22;
  const hoursBetweenLabels = width < 500 ? 6 : 3;
  const startEpoch = nowEpoch - DAY_MS / 1000;
  const points = history.filter((p) => p.t >= startEpoch && p.t <= nowEpoch + 60);
  history = history.filter((p) => p.t >= startEpoch);
  const twcids = [...new Set(points.flatMap((p) => Object.keys(p.twc)))].sort();
  const lines = series(twcids);
  let maxW = 1000;
  for (const p of points) for (const line of lines) maxW = Math.max(maxW, line.value(p) || 0);
  const stepKw = niceStep(maxW / 1000 / 4);
  const topW = Math.ceil(maxW / 1000 / stepKw) * stepKw * 1000;
  const x = (t) => left + ((t - startEpoch) / (DAY_MS / 1000)) * (width - left - right);
  const y = (w) => top + (1 - w / topW) * (height - top - bottom);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("aria-hidden", "true");
  const add = (tag, attributes, text) => {
    const element = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) element.setAttribute(k, v);
    if (text !== undefined) element.textContent = text;
    svg.append(element);
    return element;
  };
  for (let kw = 0; kw * 1000 <= topW + 1; kw += stepKw) {
    add("line", { class: "grid", x1: left, x2: width - right, y1: y(kw * 1000), y2: y(kw * 1000) });
    add("text", { x: left - 4, y: y(kw * 1000) + 4, "text-anchor": "end" }, `${+kw.toFixed(1)} kW`);
  }
  const labelEveryS = hoursBetweenLabels * 3600;
  const firstHour = Math.ceil(startEpoch / labelEveryS) * labelEveryS;
  for (let t = firstHour; t <= nowEpoch; t += labelEveryS) {
    add("line", { class: "grid", x1: x(t), x2: x(t), y1: top, y2: height - bottom });
    add("text", { x: x(t), y: height - 6, "text-anchor": "middle" }, clock(t));
  }
  for (const line of lines) {
    let d = "";
    let previous = null;
    for (const p of points) {
      const value = line.value(p);
      if (value === null || value === undefined) { previous = null; continue; }
      const joined = previous !== null && p.t - previous <= GAP_S;
      d += `${joined ? "L" : "M"}${x(p.t).toFixed(1)},${y(value).toFixed(1)}`;
      previous = p.t;
    }
    if (d) add("path", { d, "data-series": line.name }).style.stroke = line.colour;
  }
  const chart = $("chart");
  chart.replaceChildren(svg);
  chart.dataset.points = String(points.length);
  chart.dataset.firstEpoch = points.length ? String(points[0].t) : "";
  chart.dataset.lastEpoch = points.length ? String(points[points.length - 1].t) : "";
  chart.setAttribute("aria-label", chartSummary(points, lines));
  $("legend").replaceChildren(...lines.map((line) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.style.background = line.colour;
    item.append(swatch, line.name);
    return item;
  }));
}

function niceStep(rough) {
  for (const step of [0.5, 1, 2, 2.5, 5, 10, 20, 25, 50]) if (step >= rough) return step;
  return 100;
}

function chartSummary(points, lines) {
  if (!points.length) return "Chart of the last 24 hours: no points yet";
  const last = points[points.length - 1];
  const now = lines.map((line) => `${line.name} ${watts(line.value(last))}`).join(", ");
  return `Chart of the last 24 hours, ${points.length} points from ${clock(points[0].t)} to ${clock(last.t)}; latest: ${now}`;
}

// ---------------------------------------------------------------------------- controls

function bodyOf(form) {
  const e = form.elements;
  switch (form.id) {
    case "charge-now":
      return { chargeNowRate: e.chargeNowRate.value.trim(), chargeNowDuration: e.chargeNowDuration.value };
    case "policy-form":
      return { policy: e.policy.value };
    case "schedule": {
      const body = { enabled: e.enabled.checked, amps: e.amps.value.trim(),
        startingMinute: minutesOf(e.startingMinute.value), endingMinute: minutesOf(e.endingMinute.value) };
      for (const day of DAYS) body[day] = e[day].checked;
      return body;
    }
    case "non-scheduled":
      return { action: e.action.value, amps: e.amps.value.trim() };
    case "offsets":
      return { offsetName: e.offsetName.value, offsetValue: e.offsetValue.value.trim(), offsetUnit: e.offsetUnit.value };
    default:
      return {};
  }
}

function minutesOf(text) {
  const match = /^(\d{1,2}):(\d{2})$/.exec(text);
  return match ? Number(match[1]) * 60 + Number(match[2]) : text;
}

function clearErrors(container) {
  for (const p of container.querySelectorAll(".error")) p.textContent = "";
  for (const input of container.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  const done = container.querySelector(".done");
  if (done) done.textContent = "";
}

function showError(container, field, message) {
  const fields = [...container.querySelectorAll("[data-fields]")];
  const home = fields.find((f) => f.dataset.fields.split(" ").includes(field));
  const text = field && message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
  if (home) {
    home.querySelector(".error").textContent = text;
    const input = home.querySelector("input, select");
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  } else {
    container.querySelector(".form-error").textContent = text;
  }
}

async function send(container, endpoint, body) {
  clearErrors(container);
  const buttons = container.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const answer = await fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Twcmaster-Page": "1" },
      body: JSON.stringify(body),
    });
    const text = await answer.text();
    let reply = {};
    try { reply = text ? JSON.parse(text) : {}; } catch (error) { reply = {}; }
    if (answer.status === 401) {
      showError(container, null, "Not logged in (or the token changed): reload the page to log in.");
    } else if (!answer.ok) {
      showError(container, reply.field, reply.error || `refused (${answer.status})`);
    } else {
      const done = container.querySelector(".done");
      const applied = whatWasApplied(reply);
      if (done) done.textContent = `Done${applied ? `: ${applied}` : ""}.${reply.notes ? ` ${reply.notes.join(" ")}` : ""}`;
    }
  } catch (error) {
    showError(container, null, "The daemon did not answer: nothing was changed.");
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function whatWasApplied(reply) {
  if (Array.isArray(reply.applied)) return reply.applied.join("; ");
  if (reply.applied) return reply.applied;
  if (reply.rate !== undefined) return `Charge Now at ${reply.rate} A for ${reply.duration / 60} min`;
  if (reply.policy) return `policy ${reply.policy}`;
  if (reply.offsetName) return `offset ${reply.offsetName}`;
  return "";
}

function toggleAllowed(card) {
  const allowed = card.querySelector("[data-action=allow]").dataset.allowed !== "true";
  send(card, `/api/v1/twc/${card.dataset.twcid}/allowCharging`, { allowed });
}

function setPriority(card) {
  const input = card.querySelector("[data-input=priority]");
  const priority = input.value.trim() === "" ? null : input.value.trim();
  send(card, `/api/v1/twc/${card.dataset.twcid}/chargePriority`, { priority });
}

function setUpForms() {
  for (const form of document.querySelectorAll("form[data-endpoint]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send(form, form.dataset.endpoint, bodyOf(form));
    });
  }
  $("cn-cancel").addEventListener("click", () => send($("charge-now"), "/api/cancelChargeNow", {}));
}

setUpForms();
window.addEventListener("resize", () => { if (chartNowEpoch !== null) drawChart(chartNowEpoch); });
connect();
loadHistory();
setInterval(watchdog, 1000);
