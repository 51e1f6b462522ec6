/* Time Credits programme dashboard.
 *
 * Plain JavaScript, no build step, no external resources: it reads /v1/stats with the lead's bearer token
 * (kept in sessionStorage) and draws its charts as inline SVG. Every text from the API is set with
 * textContent, never parsed as HTML. Suppressed cells (fewer than 5 volunteers) are shown as words, never as
 * a number or a bar.
 */
"use strict";

(() => {
  const TOKEN_KEY = "timecredits.dashboard.token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TIME_ZONE = "Europe/London";
  const SUPPRESSED = "fewer than 5";
  const SUPPRESSED_TITLE = "Fewer than 5 volunteers: figures suppressed";
  // A figure hidden in a shown row: it describes fewer than 5 volunteers, or it is hidden with one that does, so
  // that neither can be worked out from the total (docs/design.md §5.3). "Fewer than 5" would not always be true.
  const WITHHELD = "withheld";
  const WITHHELD_TITLE = "Withheld: fewer than 5 volunteers, or hidden so that such a figure cannot be worked out from the total";
  const hiddenText = (row) => (!row || row.suppressed ? SUPPRESSED : WITHHELD);
  const hiddenTitle = (row) => (!row || row.suppressed ? SUPPRESSED_TITLE : WITHHELD_TITLE);
  // A figure is hidden when its whole cell is suppressed or when it alone describes 1 to 4 volunteers (withheld).
  const isHidden = (row, key) => !row || row.suppressed || row[key] === null || row[key] === undefined
    || (row.withheld || []).includes(key);
  const BREAKDOWNS = ["month", "area", "org", "activity", "age_band", "seb", "category"];
  const MAX_BAR_ROWS = 30;
  const MEASURES = {
    active_volunteers: { label: "Active volunteers", unit: "active volunteers" },
    new_volunteers: { label: "New volunteers", unit: "new volunteers" },
    hours: { label: "Hours given", unit: "hours" },
    credits_spent: { label: "Credits spent", unit: "credits spent" },
  };
  const ORDER = {
    age_band: ["under_16", "16-24", "25-34", "35-44", "45-54", "55-64", "65+", "prefer_not_to_say", "not_given",
      "undisclosed"],
    seb: ["professional", "intermediate", "lower", "other", "prefer_not_to_say", "not_given", "undisclosed"],
  };
  const LABELS = {
    age_band: { under_16: "Under 16", "16-24": "16–24", "25-34": "25–34", "35-44": "35–44", "45-54": "45–54",
      "55-64": "55–64", "65+": "65 and over", prefer_not_to_say: "Prefer not to say", not_given: "Not given",
      undisclosed: "No consent to statistics" },
    seb: { professional: "Professional", intermediate: "Intermediate", lower: "Lower socio-economic",
      other: "Other (retired, n/a, don't know)", prefer_not_to_say: "Prefer not to say", not_given: "Not given",
      undisclosed: "No consent to statistics" },
    category: { none: "Not linked to an opportunity", work_experience: "Work experience" },
    org: { none: "No organisation (gifts)" },
    area: { unknown: "Area not known" },
  };
  const CATEGORY_SERIES = [
    { key: "bookings", label: "Bookings" },
    { key: "attendances", label: "Attendances" },
    { key: "redemptions", label: "Redemptions" },
  ];
  const TABLE_COLUMNS = {
    month: [["active_volunteers", "Active volunteers"], ["new_volunteers", "New"], ["retained_volunteers", "Retained"],
      ["hours", "Hours"], ["credits_spent", "Credits spent"], ["credits_gifted", "Credits gifted"],
      ["bookings", "Bookings"], ["attendances", "Attended"], ["redemptions", "Redemptions"]],
    breakdown: [["active_volunteers", "Active"], ["new_volunteers", "New"], ["hours", "Hours"],
      ["credits_spent", "Spent"], ["credits_gifted", "Gifted"]],
    category: [["volunteers", "Volunteers"], ["bookings", "Bookings"], ["attendances", "Attended"],
      ["cancellations", "Cancelled"], ["redemptions", "Redemptions"], ["credits_spent", "Credits spent"]],
  };

  const number = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 2 });
  const longDate = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "long", year: "numeric", timeZone: "UTC" });
  const monthShort = new Intl.DateTimeFormat("en-GB", { month: "short", timeZone: "UTC" });
  const monthLong = new Intl.DateTimeFormat("en-GB", { month: "long", year: "numeric", timeZone: "UTC" });
  const monthOnly = new Intl.DateTimeFormat("en-GB", { month: "long", timeZone: "UTC" });

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  const state = { period: null, data: null, generation: 0, choices: [], session: false };

  // ---------------------------------------------------------------- dates (ISO strings, UTC arithmetic)

  function todayIso() {
    const parts = new Intl.DateTimeFormat("en-GB", { timeZone: TIME_ZONE, year: "numeric", month: "2-digit",
      day: "2-digit" }).formatToParts(new Date());
    const part = (type) => parts.find((p) => p.type === type).value;
    return `${part("year")}-${part("month")}-${part("day")}`;
  }
  const parseIso = (text) => { const [y, m, d] = text.split("-").map(Number); return new Date(Date.UTC(y, m - 1, d)); };
  const iso = (date) => date.toISOString().slice(0, 10);
  const monthStart = (year, month0) => new Date(Date.UTC(year, month0, 1));
  const dayBefore = (date) => new Date(date.getTime() - 86400000);
  const minIso = (a, b) => (a < b ? a : b);
  const validIso = (text) => /^\d{4}-\d{2}-\d{2}$/.test(text || "") && !Number.isNaN(parseIso(text).getTime());

  function monthsSpan(fromIso, toIso) {
    const from = parseIso(fromIso);
    const to = parseIso(toIso);
    const out = [];
    for (let d = monthStart(from.getUTCFullYear(), from.getUTCMonth()); d <= to;
      d = monthStart(d.getUTCFullYear(), d.getUTCMonth() + 1)) {
      out.push(d);
    }
    return out;
  }

  function periodText(period) {
    return `${longDate.format(parseIso(period.from))} to ${longDate.format(parseIso(period.to))}`;
  }

  function quarterText(start) {
    const end = monthStart(start.getUTCFullYear(), start.getUTCMonth() + 2);
    return `${monthOnly.format(start)}–${monthLong.format(end)}`;
  }

  function quickChoices(today) {
    const t = parseIso(today);
    const year = t.getUTCFullYear();
    const month = t.getUTCMonth();
    const quarter = monthStart(year, Math.floor(month / 3) * 3);
    const previous = monthStart(quarter.getUTCFullYear(), quarter.getUTCMonth() - 3);
    const choices = [
      // The twelve whole months before this one (docs/design.md §5.3), as the API's default period.
      { id: "last-12-months", label: `Last 12 whole months (${monthLong.format(monthStart(year, month - 12))}–`
        + `${monthLong.format(monthStart(year, month - 1))})`, from: iso(monthStart(year, month - 12)),
      to: iso(dayBefore(monthStart(year, month))) },
      { id: "previous-quarter", label: `Previous quarter (${quarterText(previous)})`, from: iso(previous),
        to: iso(dayBefore(quarter)) },
    ];
    // Figures are for whole months only (docs/design.md §5.3): a year not over yet runs to the end of last month,
    // and one with no whole month yet is not offered.
    const lastWhole = iso(dayBefore(monthStart(year, month)));
    const fyStart = month >= 3 ? year : year - 1;
    for (let fy = fyStart; fy > fyStart - 3; fy -= 1) {
      if (`${fy}-04-01` > lastWhole) continue;
      const to = minIso(`${fy + 1}-03-31`, lastWhole);
      choices.push({ id: `financial-${fy}`, label: `Financial year ${fy}–${String(fy + 1).slice(2)} (April–March)`
        + (to < `${fy + 1}-03-31` ? `, to the end of ${monthLong.format(parseIso(to))}` : ""), from: `${fy}-04-01`, to });
    }
    for (let y = year; y > year - 3; y -= 1) {
      if (`${y}-01-01` > lastWhole) continue;
      const to = minIso(`${y}-12-31`, lastWhole);
      choices.push({ id: `year-${y}`, label: `Calendar year ${y}`
        + (to < `${y}-12-31` ? `, to the end of ${monthLong.format(parseIso(to))}` : ""), from: `${y}-01-01`, to });
    }
    choices.push({ id: "custom", label: "Custom dates", from: null, to: null });
    return choices;
  }

  // ---------------------------------------------------------------- formatting

  const figure = (value) => (value === null || value === undefined ? "" : number.format(Number(value)));
  /** Hours as the committee report writes them (docs/design.md §5.3): "3,110", "9,640.5", never rounded away. */
  const hoursText = figure;

  function labelOf(groupBy, row) {
    const known = LABELS[groupBy] && LABELS[groupBy][row.group];
    if (known) return known;
    const label = row.label || row.group;
    return label.charAt(0).toUpperCase() + label.slice(1);
  }

  function el(tag, attributes = {}, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attributes = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** A tooltip (and accessible name) for a mark; a text keeps its own content, its title goes on a group. */
  function tooltip(node, text) {
    if (node.localName !== "text") {
      node.appendChild(svg("title", {}, text));
      return node;
    }
    const group = svg("g");
    group.appendChild(svg("title", {}, text));
    if (node.parentNode) node.parentNode.replaceChild(group, node);
    group.appendChild(node);
    return group;
  }

  /** Ticks from 0 to a round maximum at or above `max`, about `count` of them. */
  function niceTicks(max, count = 5) {
    if (!(max > 0)) return [0, 1];
    const raw = max / count;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * power).find((s) => s >= raw);
    const top = Math.ceil(max / step) * step;
    const ticks = [];
    for (let v = 0; v <= top + step / 2; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
    return ticks;
  }

  /** Below this width (pixels) a chart's labels go above their bars rather than beside them. */
  const NARROW = 560;
  /** The height of one bar with its gap (pixels). */
  const BAR_ROW = 28;

  function chartWidth(container, fallback = 560) {
    return Math.max(260, Math.round(container.clientWidth || fallback));
  }

  function newSvg(container, width, height, title, description) {
    const id = `${container.dataset.chart}-svg`;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
      "aria-labelledby": `${id}-title ${id}-desc`, preserveAspectRatio: "xMinYMin meet" });
    root.appendChild(svg("title", { id: `${id}-title` }, title));
    root.appendChild(svg("desc", { id: `${id}-desc` }, description));
    container.replaceChildren(root);
    return root;
  }

  function emptyNote(container, text) {
    container.replaceChildren(el("p", { class: "empty-note", "data-testid": "empty" }, text));
  }

  /** Shortens an SVG text to `width` pixels, with an ellipsis; the full text stays in a tooltip. */
  function fitText(node, width) {
    const full = node.textContent;
    if (node.getComputedTextLength() <= width) return;
    let text = full;
    while (text.length > 1 && node.getComputedTextLength() > width) {
      text = text.slice(0, -1);
      node.textContent = `${text.trimEnd()}…`;
    }
    tooltip(node, full);
  }

  // ---------------------------------------------------------------- API

  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function request(path, params) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    // Signed in to the web app, the session's cookie reads the statistics (docs/design.md §8.1): no token to paste.
    if (!token && !state.session) throw new ApiFailure(401, "unauthenticated", "Please sign in.");
    const query = new URLSearchParams(params).toString();
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    let response;
    try {
      response = await fetch(`${path}?${query}`, { headers, cache: "no-store", credentials: "same-origin" });
    } catch (error) {
      throw new ApiFailure(0, "network", "The server could not be reached. Check the connection and try again.");
    }
    if (!response.ok) {
      let code = "";
      let message = `${response.status} ${response.statusText}`;
      try {
        const body = await response.json();
        code = body.error.code;
        message = body.error.message;
      } catch (error) { /* not the API's error shape: keep the status line */ }
      throw new ApiFailure(response.status, code, message);
    }
    return response;
  }

  const getJson = async (path, params) => (await request(path, params)).json();

  // ---------------------------------------------------------------- sign-in

  function showSignIn({ error = "", info = "" } = {}) {
    $("#signin").hidden = false;
    $("#main").hidden = true;
    $("#main").dataset.state = "signed-out";
    $('[data-testid="account"]').hidden = true;
    const errorBox = $("#signin-error");
    errorBox.textContent = error;
    errorBox.hidden = !error;
    const infoBox = $("#signin-info");
    infoBox.textContent = info;
    infoBox.hidden = !info;
    $("#token").setAttribute("aria-invalid", error ? "true" : "false");
    $("#token").value = "";
    $("#token").focus();
  }

  function showDashboard() {
    $("#signin").hidden = true;
    $("#main").hidden = false;
    $('[data-testid="account"]').hidden = false;
  }

  function clearFigures() {
    state.data = null;
    state.generation += 1;
    $$("[data-chart], [data-table]").forEach((node) => node.replaceChildren());
    $$('[data-testid="figure-value"]').forEach((node) => { node.textContent = "–"; node.classList.remove("is-suppressed"); });
    $('[data-testid="cold-spots"]').replaceChildren();
  }

  function signOut(message, leaving = false) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.session && leaving) {
      window.location.assign("/app");  // a web-app session ends there, with its own sign-out
      return;
    }
    state.session = false;  // a session whose person may not read the statistics: a lead's token may
    clearFigures();
    showSignIn(message);
  }

  function refusal(failure) {
    if (failure.status === 401) {
      return "That token was not accepted: it is unknown, mistyped or revoked. Check it and sign in again.";
    }
    return "That token cannot read the programme's statistics: it needs the lead or admin role.";
  }

  // ---------------------------------------------------------------- period

  function fillChoices() {
    state.choices = quickChoices(todayIso());
    const select = $("#period-choice");
    select.replaceChildren(...state.choices.map((c) => el("option", { value: c.id }, c.label)));
  }

  function choiceFor(period) {
    const found = state.choices.find((c) => c.from === period.from && c.to === period.to);
    return found ? found.id : "custom";
  }

  function setPeriodInputs(period) {
    $("#period-from").value = period.from;
    $("#period-to").value = period.to;
    $("#period-choice").value = choiceFor(period);
  }

  function periodFromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const from = params.get("from");
    const to = params.get("to");
    return validIso(from) && validIso(to) && from <= to ? { from, to } : null;
  }

  function choosePeriod(period) {
    state.period = period;
    setPeriodInputs(period);
    const hash = `#from=${period.from}&to=${period.to}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
    load();
  }

  function onChoice() {
    const choice = state.choices.find((c) => c.id === $("#period-choice").value);
    if (!choice || choice.id === "custom") {
      $("#period-from").focus();
      return;
    }
    choosePeriod({ from: choice.from, to: choice.to });
  }

  function onPeriodSubmit(event) {
    event.preventDefault();
    const from = $("#period-from").value;
    const to = $("#period-to").value;
    const problem = !validIso(from) || !validIso(to) ? "Enter both dates of the period."
      : from > to ? "The period starts after it ends: check the dates." : "";
    $("#period-from").setAttribute("aria-invalid", problem ? "true" : "false");
    $("#period-to").setAttribute("aria-invalid", problem ? "true" : "false");
    if (problem) {
      showLoadError(problem);
      return;
    }
    choosePeriod({ from, to });
  }

  // ---------------------------------------------------------------- loading

  function showLoadError(message) {
    const box = $("#load-error");
    box.textContent = message;
    box.hidden = !message;
  }

  async function load() {
    const period = state.period;
    const generation = ++state.generation;
    const main = $("#main");
    main.dataset.state = "loading";
    $('[data-testid="loading"]').textContent = "Loading the figures…";
    showLoadError("");
    $('[data-testid="period-label"]').textContent = periodText(period);
    try {
      const params = { from: period.from, to: period.to };
      const [reports, cold] = await Promise.all([
        Promise.all(BREAKDOWNS.map((groupBy) => getJson("/v1/stats/participation", { group_by: groupBy, ...params }))),
        getJson("/v1/stats/cold-spots", params),
      ]);
      if (generation !== state.generation) return;
      state.data = { period, cold, ...Object.fromEntries(BREAKDOWNS.map((g, i) => [g, reports[i]])) };
      render();
      main.dataset.period = `${period.from}/${period.to}`;
      main.dataset.state = "ready";
      $('[data-testid="loading"]').textContent = "";
      $('[data-testid="generated"]').textContent =
        `Figures read at ${new Date().toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" })}.`;
    } catch (failure) {
      if (generation !== state.generation) return;
      $('[data-testid="loading"]').textContent = "";
      if (failure.status === 401 || failure.status === 403) {
        signOut({ error: refusal(failure) });
        return;
      }
      main.dataset.state = "error";
      showLoadError(`The figures could not be loaded: ${failure.message}`);
    }
  }

  function render() {
    const data = state.data;
    if (!data) return;
    renderHeadline(data.month.totals);
    renderMonths(data.month, data.period);
    const measure = $("#measure").value;
    for (const groupBy of ["area", "org", "activity", "age_band", "seb"]) renderBreakdown(groupBy, data[groupBy], measure);
    renderCategories(data.category);
    renderColdSpots(data.cold);
    for (const groupBy of BREAKDOWNS) renderTable(groupBy, data[groupBy]);
  }

  // ---------------------------------------------------------------- headline

  function renderHeadline(totals) {
    for (const card of $$("[data-figure]")) {
      const value = $('[data-testid="figure-value"]', card);
      const hide = isHidden(totals, card.dataset.figure);
      value.classList.toggle("is-suppressed", hide);
      value.textContent = hide ? SUPPRESSED : figure(totals[card.dataset.figure]);
      value.title = hide ? SUPPRESSED_TITLE : "";
    }
  }

  // ---------------------------------------------------------------- participation over time

  function renderMonths(report, period) {
    const container = $('[data-chart="month"]');
    const byMonth = new Map(report.rows.map((row) => [row.group, row]));
    const months = monthsSpan(period.from, period.to).map((start) => {
      const key = iso(start).slice(0, 7);
      return { key, start, name: monthLong.format(start), row: byMonth.get(key) || null };
    });
    if (!report.rows.length) {
      emptyNote(container, "No activity was recorded in this period.");
      return;
    }
    // Two panels on one time axis (small multiples) rather than two scales on one panel.
    const width = chartWidth(container, 1100);
    const left = 56;
    const right = 16;
    const plotW = width - left - right;
    const bars = { top: 26, height: 190 };
    const hours = { top: bars.top + bars.height + 46, height: 120 };
    const axisY = hours.top + hours.height;
    const height = axisY + 44;
    const band = plotW / months.length;
    const barW = Math.max(2, Math.min(56, band * 0.62));
    const xCenter = (i) => left + band * i + band / 2;
    const labelled = band >= 34;
    const shownBars = months.filter((month) => !isHidden(month.row, "active_volunteers"));
    const shownHours = months.filter((month) => !isHidden(month.row, "hours"));
    const first = months[0];
    const last = months[months.length - 1];
    const root = newSvg(container, width, height, "Active volunteers and hours given by month",
      `Two panels for ${first.name} to ${last.name}: active volunteers each month (bars) and hours given each month (line).`);

    function panel(box, title, values) {
      const ticks = niceTicks(Math.max(0, ...values), 4);
      const top = ticks[ticks.length - 1];
      const y = (v) => box.top + box.height - (v / top) * box.height;
      const g = root.appendChild(svg("g", { "aria-hidden": "true" }));
      g.appendChild(svg("text", { class: "panel-title", x: 0, y: box.top - 12 }, title));
      for (const tick of ticks) {
        g.appendChild(svg("line", { class: tick === 0 ? "baseline" : "gridline", x1: left, x2: left + plotW, y1: y(tick), y2: y(tick) }));
        g.appendChild(svg("text", { class: "tick-label", x: left - 8, y: y(tick) + 4, "text-anchor": "end" }, number.format(tick)));
      }
      return y;
    }

    const yBar = panel(bars, "Active volunteers", shownBars.map((m) => m.row.active_volunteers));
    const yHours = panel(hours, "Hours given", shownHours.map((m) => Number(m.row.hours)));

    const every = Math.max(1, Math.ceil(40 / band));
    const axis = root.appendChild(svg("g", { class: "x-labels", "aria-hidden": "true" }));
    const barGroup = root.appendChild(svg("g", { class: "bars" }));
    months.forEach((month, i) => {
      const x = xCenter(i);
      if (i % every === 0) {
        axis.appendChild(svg("text", { class: "tick-label", x, y: axisY + 18, "text-anchor": "middle" }, monthShort.format(month.start)));
        if (i === 0 || month.start.getUTCMonth() === 0) {
          axis.appendChild(svg("text", { class: "tick-label", x, y: axisY + 34, "text-anchor": "middle" }, String(month.start.getUTCFullYear())));
        }
      }
      const baseBars = bars.top + bars.height;
      if (isHidden(month.row, "active_volunteers")) {
        const mark = month.row ? { cls: "suppressed", id: "suppressed", text: SUPPRESSED, why: SUPPRESSED_TITLE.toLowerCase() }
          : { cls: "empty", id: "no-activity", text: "0", why: "no activity recorded" };
        // The same words as every other chart and table; upright when a month is too narrow for them.
        const upright = mark.text.length > 1 && band < 84;
        for (const base of [baseBars, axisY]) {
          barGroup.appendChild(tooltip(svg("text", { class: mark.cls, x: upright ? x + 4 : x, y: base - 6,
            "text-anchor": upright ? "start" : "middle", transform: upright ? `rotate(-90 ${x + 4} ${base - 6})` : null,
            "data-testid": mark.id, "data-group": month.key }, mark.text), `${month.name}: ${mark.why}`));
        }
        return;
      }
      const value = month.row.active_volunteers;
      const y = yBar(value);
      barGroup.appendChild(tooltip(svg("rect", { class: "bar", "data-testid": "bar", "data-group": month.key,
        "data-value": value, x: x - barW / 2, y, width: barW, height: Math.max(0, baseBars - y), rx: 2 }),
      `${month.name}: ${number.format(value)} active volunteers`));
      if (labelled) {
        barGroup.appendChild(svg("text", { class: "value-label", x, y: y - 6, "text-anchor": "middle", "aria-hidden": "true" },
          number.format(value)));
      }
    });

    const line = root.appendChild(svg("g", { class: "hours" }));
    const segments = [];
    let segment = [];
    months.forEach((month, i) => {
      if (!isHidden(month.row, "hours")) {
        segment.push({ x: xCenter(i), y: yHours(Number(month.row.hours)), month });
      } else if (segment.length) {
        segments.push(segment);
        segment = [];
      }
    });
    if (segment.length) segments.push(segment);
    for (const points of segments) {
      if (points.length > 1) {
        const path = points.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`);
        line.appendChild(svg("polygon", { class: "hours-area", "aria-hidden": "true",
          points: [`${points[0].x.toFixed(1)},${axisY}`, ...path, `${points[points.length - 1].x.toFixed(1)},${axisY}`].join(" ") }));
        line.appendChild(svg("polyline", { class: "hours-line", "aria-hidden": "true", points: path.join(" ") }));
      }
      for (const p of points) {
        line.appendChild(tooltip(svg("circle", { class: "point", "data-testid": "point", "data-group": p.month.key,
          "data-value": p.month.row.hours, cx: p.x, cy: p.y, r: 4.5 }), `${p.month.name}: ${hoursText(p.month.row.hours)} hours given`));
        if (labelled) {
          line.appendChild(svg("text", { class: "value-label", x: p.x, y: p.y - 10, "text-anchor": "middle", "aria-hidden": "true" },
            hoursText(p.month.row.hours)));
        }
      }
    }
  }

  // ---------------------------------------------------------------- horizontal bars

  function sortedRows(groupBy, rows, measure) {
    const copy = rows.slice();
    if (ORDER[groupBy]) {
      const order = ORDER[groupBy];
      const rank = (row) => (order.includes(row.group) ? order.indexOf(row.group) : order.length);
      return copy.sort((a, b) => rank(a) - rank(b) || a.group.localeCompare(b.group));
    }
    const value = (row) => (isHidden(row, measure) ? -1 : Number(row[measure]));
    return copy.sort((a, b) => value(b) - value(a) || labelOf(groupBy, a).localeCompare(labelOf(groupBy, b)));
  }

  /** Organisations that can have the measure: partners only take credits, community organisations only log
   * hours (docs/design.md §5.3), so each is listed for its own measure and never as a row of zeros. */
  function orgRows(rows, measure) {
    const kind = measure === "credits_spent" ? "partner" : "community";
    return rows.filter((row) => (row.kinds || []).includes(kind));
  }

  function orgNote(measure) {
    return measure === "credits_spent" ? "Partners, where volunteers spend their credits."
      : "Community organisations, where volunteers give their hours.";
  }

  function breakdownReport(groupBy, report, measure) {
    return groupBy === "org" ? { ...report, rows: orgRows(report.rows, measure) } : report;
  }

  function renderBreakdown(groupBy, fullReport, measure) {
    const container = $(`[data-chart="${groupBy}"]`);
    const report = breakdownReport(groupBy, fullReport, measure);
    if (groupBy === "org") $('[data-testid="org-note"]').textContent = orgNote(measure);
    if (!report.rows.length) {
      emptyNote(container, "No activity was recorded in this period.");
      return;
    }
    const { label: measureLabel, unit } = MEASURES[measure];
    const sorted = sortedRows(groupBy, report.rows, measure);
    const rows = sorted.slice(0, MAX_BAR_ROWS);
    const title = $(`#${container.closest("section").getAttribute("aria-labelledby")}`).textContent;
    const width = chartWidth(container);
    // On a narrow screen each label takes a line of its own above its bar, so that no label is cut short.
    const stacked = width < NARROW;
    const labelH = stacked ? 18 : 0;
    const rowH = BAR_ROW + labelH;
    const m = { top: 6, bottom: 6 };
    const height = m.top + m.bottom + rows.length * rowH;
    const root = newSvg(container, width, height, `${measureLabel} ${title.toLowerCase()}`,
      `${measureLabel} for each group in the period; suppressed groups are marked "${SUPPRESSED}".`);

    const labels = rows.map((row, i) => root.appendChild(svg("text", { class: "row-label", x: 0,
      y: m.top + i * rowH + (stacked ? 14 : rowH / 2 + 4) }, labelOf(groupBy, row))));
    const longest = Math.max(...labels.map((node) => node.getComputedTextLength()));
    const labelW = stacked ? 0 : Math.min(Math.ceil(longest) + 12, Math.round(width * 0.42));
    labels.forEach((node) => fitText(node, stacked ? width : labelW - 12));
    const valueW = stacked ? 90 : 76;
    const barMax = width - labelW - valueW;
    const values = rows.filter((row) => !isHidden(row, measure)).map((row) => Number(row[measure]));
    const max = Math.max(0, ...values) || 1;

    rows.forEach((row, i) => {
      const y = m.top + i * rowH + labelH;
      const name = labelOf(groupBy, row);
      const group = root.appendChild(svg("g", { "data-row": row.group }));
      if (isHidden(row, measure)) {
        group.appendChild(tooltip(svg("text", { class: "suppressed", x: labelW, y: y + BAR_ROW / 2 + 4,
          "data-testid": "suppressed", "data-group": row.group }, hiddenText(row)), `${name}: ${hiddenTitle(row).toLowerCase()}`));
        return;
      }
      const value = Number(row[measure]);
      const length = (value / max) * barMax;
      group.appendChild(tooltip(svg("rect", { class: "bar", "data-testid": "bar", "data-group": row.group,
        "data-value": row[measure], x: labelW, y: y + 4, width: Math.max(value > 0 ? 1 : 0, length), height: BAR_ROW - 8, rx: 2 }),
      `${name}: ${figure(row[measure])} ${unit}`));
      group.appendChild(svg("text", { class: "value-label", x: labelW + length + 6, y: y + BAR_ROW / 2 + 4,
        "aria-hidden": "true" }, figure(row[measure])));
    });
    if (sorted.length > rows.length) {
      container.appendChild(el("p", { class: "empty-note", "data-testid": "more" },
        `The ${rows.length} largest of ${sorted.length} are drawn; all are in the table below.`));
    }
  }

  function renderCategories(report) {
    const container = $('[data-chart="category"]');
    const rows = report.rows.slice().sort((a, b) => (a.group === "none") - (b.group === "none")
      || labelOf("category", a).localeCompare(labelOf("category", b)));
    if (!rows.length) {
      emptyNote(container, "No bookings or spending were recorded in this period.");
      return;
    }
    const width = chartWidth(container, 1100);
    const stacked = width < NARROW;  // labels above their bars on a narrow screen, as in renderBreakdown
    const labelH = stacked ? 18 : 0;
    const barH = 13;
    const groupH = CATEGORY_SERIES.length * (barH + 3) + 14 + labelH;
    const height = rows.length * groupH + 8;
    const root = newSvg(container, width, height, "Bookings, attendances and redemptions by partner category",
      "For each category of opportunity: bookings made, bookings attended and direct spends with partners.");
    const labels = rows.map((row, i) => root.appendChild(svg("text", { class: "row-label", x: 0,
      y: 4 + i * groupH + (stacked ? 13 : (groupH - 14) / 2 + 4) }, labelOf("category", row))));
    const longest = Math.max(...labels.map((node) => node.getComputedTextLength()));
    const labelW = stacked ? 0 : Math.min(Math.ceil(longest) + 16, Math.round(width * 0.35));
    labels.forEach((node) => fitText(node, stacked ? width : labelW - 16));
    const barMax = width - labelW - 70;
    const max = Math.max(1, ...rows.flatMap((r) => CATEGORY_SERIES.filter((s) => !isHidden(r, s.key)).map((s) => r[s.key])));

    const unlinked = rows.find((row) => row.group === "none" && !row.suppressed && row.redemptions > 0);
    if (unlinked) {
      container.appendChild(el("p", { class: "empty-note", "data-testid": "unlinked-note" },
        "Direct spends that name no opportunity cannot be given a category: they are counted under "
        + `“${labelOf("category", unlinked)}”.`));
    }
    rows.forEach((row, i) => {
      const top = 4 + i * groupH + labelH;
      const name = labelOf("category", row);
      const group = root.appendChild(svg("g", { "data-row": row.group }));
      if (row.suppressed) {
        group.appendChild(tooltip(svg("text", { class: "suppressed", x: labelW, y: top + (groupH - labelH - 14) / 2 + 4,
          "data-testid": "suppressed", "data-group": row.group }, SUPPRESSED), `${name}: ${SUPPRESSED_TITLE.toLowerCase()}`));
        return;
      }
      CATEGORY_SERIES.forEach((series, s) => {
        const y = top + s * (barH + 3);
        if (isHidden(row, series.key)) {
          group.appendChild(tooltip(svg("text", { class: "suppressed", x: labelW, y: y + barH - 2,
            "data-testid": "suppressed", "data-group": row.group, "data-series": series.key }, WITHHELD),
          `${name}: ${series.label.toLowerCase()}: ${WITHHELD_TITLE.toLowerCase()}`));
          return;
        }
        const value = row[series.key];
        const length = (value / max) * barMax;
        group.appendChild(tooltip(svg("rect", { class: `bar series-${series.key}`, "data-testid": "bar",
          "data-series": series.key, "data-group": row.group, "data-value": value, x: labelW, y,
          width: Math.max(value > 0 ? 1 : 0, length), height: barH, rx: 2 }), `${name}: ${number.format(value)} ${series.label.toLowerCase()}`));
        group.appendChild(svg("text", { class: "value-label", x: labelW + length + 5, y: y + barH - 2,
          "aria-hidden": "true" }, number.format(value)));
      });
    });
  }

  // ---------------------------------------------------------------- tables

  /** A table in a container of its own that scrolls sideways when the table is wider than the screen, with a
   * cue that says so while it does; the page itself never scrolls sideways. Focusable, so that keyboard users
   * can scroll it too. */
  const fits = new ResizeObserver((entries) => entries.forEach(({ target }) => updateCue(target)));

  function updateCue(wrap) {
    const overflows = wrap.scrollWidth > wrap.clientWidth + 1;
    const atEnd = wrap.scrollLeft + wrap.clientWidth >= wrap.scrollWidth - 1;
    wrap.classList.toggle("is-scrollable", overflows);
    wrap.classList.toggle("is-scrolled-to-end", atEnd);
    wrap.parentNode.querySelector('[data-testid="scroll-cue"]').hidden = !overflows;
  }

  let captions = 0;

  function scrollingTable(table, name) {
    const outer = el("div", { class: "table-scroll" });
    // The caption goes above the scrolling container, so that it wraps to the screen rather than to the table.
    const caption = table.querySelector("caption");
    if (caption) {
      captions += 1;
      const id = `table-caption-${captions}`;
      outer.appendChild(el("p", { class: "table-caption", id }, caption.textContent));
      table.setAttribute("aria-labelledby", id);
      caption.remove();
    }
    const cue = outer.appendChild(el("p", { class: "scroll-cue", "data-testid": "scroll-cue", hidden: true },
      "Scroll the table sideways to see every column →"));
    const wrap = outer.appendChild(el("div", { class: "table-wrap", role: "region", tabindex: "0",
      "aria-label": name }));
    wrap.appendChild(table);
    wrap.addEventListener("scroll", () => updateCue(wrap), { passive: true });
    fits.observe(wrap);
    cue.hidden = true;
    return outer;
  }

  function cell(row, key) {
    if (isHidden(row, key)) {
      return el("td", { class: "num suppressed-cell", title: hiddenTitle(row) }, hiddenText(row));
    }
    return el("td", { class: "num" }, figure(row[key]));
  }

  function renderTable(groupBy, report) {
    const holder = $(`[data-table="${groupBy}"]`);
    if (!holder) return;
    const table = el("table", { "data-testid": `table-${groupBy}` });
    table.appendChild(el("caption", {}, `Figures for ${periodText(state.data.period)}; `
      + `“${SUPPRESSED}” marks groups of fewer than 5 volunteers, “${WITHHELD}” a figure that describes fewer than 5 `
      + "or would let such a figure be worked out from the total."));
    const columns = TABLE_COLUMNS[groupBy] || TABLE_COLUMNS.breakdown;
    const head = table.appendChild(el("thead")).appendChild(el("tr"));
    head.appendChild(el("th", { scope: "col" }, groupBy === "month" ? "Month" : "Group"));
    columns.forEach(([, label]) => head.appendChild(el("th", { scope: "col", class: "num" }, label)));
    const body = table.appendChild(el("tbody"));
    const shownRows = breakdownReport(groupBy, report, $("#measure").value).rows;
    const rows = groupBy === "month" ? shownRows : sortedRows(groupBy, shownRows,
      groupBy === "org" ? $("#measure").value : "active_volunteers");
    for (const row of [...rows, { ...report.totals, group: "total", label: "Total" }]) {
      const tr = body.appendChild(el("tr"));
      tr.appendChild(el("th", { scope: "row" }, row.group === "total" ? "Total" : labelOf(groupBy, row)));
      columns.forEach(([key]) => tr.appendChild(cell(row, key)));
    }
    const section = $(`#${holder.closest("section").getAttribute("aria-labelledby")}`).textContent;
    holder.replaceChildren(scrollingTable(table, `${section}: the figures`));
  }

  function renderColdSpots(report) {
    const holder = $('[data-testid="cold-spots"]');
    $('[data-testid="cold-method"]').textContent = report.areas.length && report.method
      ? `How the cold score is worked out: ${report.method.charAt(0).toLowerCase()}${report.method.slice(1)}` : "";
    $('[data-testid="cold-sources"]').textContent = report.areas.length && report.sources.length
      ? `Where the areas' need and population figures come from: ${report.sources.join("; ")}.` : "";
    const synthetic = $('[data-testid="cold-synthetic"]');
    synthetic.hidden = !(report.areas.length && report.synthetic);
    synthetic.textContent = "These areas' need and population figures are made up for the demonstration, not "
      + "official statistics: the ranking shows how cold spots are found, not where they are.";
    if (!report.areas.length) {
      holder.replaceChildren(el("p", { class: "empty-note", "data-testid": "empty" },
        "No areas have been loaded yet, so cold spots cannot be ranked. Your programme administrator can load "
        + "each area's need decile and population."));
      return;
    }
    const table = el("table", { class: "cold-table", "data-testid": "table-cold-spots" });
    table.appendChild(el("caption", {}, `Cold spots for ${periodText(state.data.period)}, coldest first; `
      + "areas whose figures are withheld follow, by need decile, not ranked."));
    const head = table.appendChild(el("thead")).appendChild(el("tr"));
    [["Rank", "num"], ["Area", ""], ["Need decile", "num", "1 is the most deprived tenth, 10 the least"],
      ["Population", "num"], ["Active volunteers", "num"], ["Per 1,000 residents", "num"], ["Cold score", "num",
        "Higher is colder: high need and few residents taking part"]]
      .forEach(([label, cls, title]) => head.appendChild(el("th", { scope: "col", class: cls || null, title: title || null }, label)));
    const body = table.appendChild(el("tbody"));
    for (const area of report.areas) {
      const tr = body.appendChild(el("tr", { "data-testid": "cold-spot", "data-area": area.area }));
      // Hidden areas are not ranked, not even among themselves (docs/design.md §5.3).
      tr.appendChild(el("td", { class: "num" }, area.rank === null ? "–" : String(area.rank)));
      const name = tr.appendChild(el("th", { scope: "row" }, area.name));
      name.appendChild(el("span", { class: "area-code" }, area.area));
      tr.appendChild(el("td", { class: "num" }, String(area.need_decile)));
      tr.appendChild(el("td", { class: "num" }, number.format(area.population)));
      if (area.suppressed) {
        tr.appendChild(el("td", { class: "num suppressed-cell", title: WITHHELD_TITLE, "data-testid": "suppressed" }, WITHHELD));
        tr.appendChild(el("td", { class: "num suppressed-cell", title: WITHHELD_TITLE }, WITHHELD));
      } else {
        tr.appendChild(el("td", { class: "num" }, number.format(area.active_volunteers)));
        tr.appendChild(el("td", { class: "num" }, area.per_1000_residents));
      }
      if (area.cold_score === null) {
        tr.appendChild(el("td", { class: "num suppressed-cell", title: WITHHELD_TITLE }, WITHHELD));
        continue;
      }
      const score = tr.appendChild(el("td", { class: "num" }));
      const wrap = score.appendChild(el("span", { class: "score" }));
      const meter = wrap.appendChild(svg("svg", { viewBox: "0 0 80 10", "aria-hidden": "true", focusable: "false" }));
      meter.appendChild(svg("rect", { class: "track", x: 0, y: 0, width: 80, height: 10, rx: 2 }));
      meter.appendChild(svg("rect", { class: "fill", x: 0, y: 0, width: Math.max(0, Math.min(1, area.cold_score)) * 80, height: 10, rx: 2 }));
      wrap.appendChild(el("span", {}, area.cold_score.toFixed(2)));
    }
    holder.replaceChildren(scrollingTable(table, "Cold spots table"));
  }

  // ---------------------------------------------------------------- CSV download

  async function downloadCsv(button) {
    const groupBy = button.dataset.csv;
    const period = state.period;
    button.disabled = true;
    const label = button.textContent;
    button.textContent = "Preparing…";
    try {
      const response = await request("/v1/stats/participation.csv", { group_by: groupBy, from: period.from, to: period.to });
      const blob = await response.blob();
      const disposition = response.headers.get("content-disposition") || "";
      const match = /filename="?([^";]+)"?/.exec(disposition);
      const link = el("a", { href: URL.createObjectURL(blob),
        download: match ? match[1] : `participation-${groupBy}-${period.from}-${period.to}.csv` });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (failure) {
      if (failure.status === 401 || failure.status === 403) signOut({ error: refusal(failure) });
      else showLoadError(`The CSV file could not be made: ${failure.message}`);
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }

  // ---------------------------------------------------------------- start

  function start() {
    fillChoices();
    $("#signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("#token").value.trim();
      if (!token) {
        showSignIn({ error: "Enter your access token." });
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      showDashboard();
      choosePeriod(state.period || periodFromHash() || defaultPeriod());
      $("#main").focus();
    });
    $('[data-action="sign-out"]').addEventListener("click", () => signOut({ info: "You have signed out. The token was removed from this browser tab." }, true));
    $('[data-action="print"]').addEventListener("click", () => window.print());
    $("#period-choice").addEventListener("change", onChoice);
    $("#period-form").addEventListener("submit", onPeriodSubmit);
    for (const input of [$("#period-from"), $("#period-to")]) {
      input.addEventListener("input", () => { $("#period-choice").value = "custom"; });
    }
    $("#measure").addEventListener("change", () => {
      if (!state.data) return;
      for (const groupBy of ["area", "org", "activity", "age_band", "seb"]) renderBreakdown(groupBy, state.data[groupBy], $("#measure").value);
      renderTable("org", state.data.org);
    });
    $$("[data-csv]").forEach((button) => button.addEventListener("click", () => downloadCsv(button)));
    let resizeTimer = null;
    let lastWidth = window.innerWidth;
    window.addEventListener("resize", () => {
      if (window.innerWidth === lastWidth) return;
      lastWidth = window.innerWidth;
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(render, 150);
    });

    state.period = periodFromHash();
    if (sessionStorage.getItem(TOKEN_KEY)) {
      showDashboard();
      choosePeriod(state.period || defaultPeriod());
      return;
    }
    signedInToTheApp().then((signedIn) => {
      state.session = signedIn;
      if (signedIn) {
        showDashboard();
        choosePeriod(state.period || defaultPeriod());
      } else {
        showSignIn();
      }
    });
  }

  /** Whether a web-app session is live: the API answers a read with its cookie alone. */
  async function signedInToTheApp() {
    try {
      const response = await fetch("/v1/tokens", { credentials: "same-origin", cache: "no-store" });
      return response.ok;
    } catch (error) {
      return false;
    }
  }

  function defaultPeriod() {
    const choice = state.choices[0];
    return { from: choice.from, to: choice.to };
  }

  start();
})();
