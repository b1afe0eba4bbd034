// The page at /: recommendations, ratings, similar movies and the model card, over the public API only.
// Every title reaches the DOM as text (el() below): never innerHTML with data.
"use strict";

const RETRY_MS = 2000; // while no model is loaded
const NEW_USER_BASE = 900000000; // above MovieLens ids: a new user never collides with one in the data

const state = { userId: "", timestamp: null, k: 10, excludeSeen: true, movie: null }; // timestamp null: now
let model = null; // GET /model once the service is ready
let clockSkew = 0; // server clock minus this browser's, in seconds (from a "now" answer)
let recommendSeq = 0; // answers to older requests are dropped

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "className") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error?.message || `${response.status} ${response.statusText}`);
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// --- time ------------------------------------------------------------------------------------------------

const isoDate = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 10);
const isoMoment = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
const endOfDay = (date) => Date.parse(`${date}T23:59:59Z`) / 1000;
const serverNow = () => Math.floor(Date.now() / 1000 + clockSkew);

function splitTitle(title) {
  const match = /^(.*) \((\d{4})\)\s*$/.exec(title ?? "");
  return match ? { name: match[1], year: match[2] } : { name: title ?? "(not in this catalogue)", year: "" };
}

// --- state <-> URL and form ------------------------------------------------------------------------------

function readUrl() {
  const params = new URLSearchParams(location.search);
  state.userId = params.get("user_id") ?? "";
  const timestamp = params.get("timestamp") ?? "now"; // Unix seconds, an ISO-8601 date(-time) or "now"
  const seconds = /^\d+$/.test(timestamp) ? Number(timestamp) : Date.parse(timestamp) / 1000;
  state.timestamp = timestamp !== "now" && Number.isFinite(seconds) ? Math.floor(seconds) : null;
  state.k = Number(params.get("k")) || 10;
  state.excludeSeen = params.get("exclude_seen") !== "false";
  state.movie = params.get("movie");
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.userId) params.set("user_id", state.userId);
  params.set("timestamp", state.timestamp ?? "now");
  params.set("k", state.k);
  params.set("exclude_seen", state.excludeSeen);
  if (state.movie) params.set("movie", state.movie);
  history.replaceState(null, "", `?${params}`);
}

function showState() {
  $("user-id").value = state.userId;
  $("k").value = state.k;
  $("exclude-seen").checked = state.excludeSeen;
  $("now").checked = state.timestamp === null;
  $("date").disabled = state.timestamp === null;
  if (state.timestamp !== null) $("date").value = isoDate(state.timestamp);
  $("moment").textContent = state.timestamp === null ? "" : isoMoment(state.timestamp);
}

function readForm() {
  state.userId = $("user-id").value.trim();
  state.k = Math.max(1, Number($("k").value) || 10);
  state.excludeSeen = $("exclude-seen").checked;
  if ($("now").checked) state.timestamp = null;
  else if ($("date").value && (state.timestamp === null || $("date").value !== isoDate(state.timestamp))) {
    state.timestamp = endOfDay($("date").value); // a picked day means "as of the end of that day"
  } else if (state.timestamp === null) {
    state.timestamp = model.data.timestamp_max;
  }
}

// --- movies as list items --------------------------------------------------------------------------------

function titleButton(movie) {
  const { name, year } = splitTitle(movie.title);
  return el(
    "button",
    { type: "button", className: "title", onclick: () => selectMovie(movie.movie_id) },
    name,
    year ? el("span", { className: "year" }, ` ${year}`) : "",
  );
}

function starButtons(movie) {
  const { name } = splitTitle(movie.title);
  const stars = el("div", { className: "stars", role: "group", "aria-label": `Rate ${name}` });
  for (let rating = 1; rating <= 5; rating++) {
    const label = `Rate ${name} ${rating} star${rating > 1 ? "s" : ""}`;
    const onclick = () => rate(movie, rating);
    stars.append(el("button", { type: "button", "aria-label": label, title: label, onclick }, "★"));
  }
  return stars;
}

const genreLine = (movie) => el("span", { className: "genres" }, movie.genres.join(" · "));

// The user's own ratings without which this movie would score lowest (GET /recommend?explain=true).
function becauseLine(movie) {
  if (!movie.because?.length) return "";
  return el("span", { className: "because" }, `because you rated ${movie.because.map((m) => `“${m.title}”`).join(", ")}`);
}

function movieItem(movie, withStars) {
  const score = movie.score === null || movie.score === undefined ? "—" : movie.score.toFixed(3);
  return el(
    "li",
    { className: "movie", "data-movie-id": movie.movie_id },
    el("span", { className: "rank" }, movie.rank ?? ""),
    el("div", { className: "about" }, titleButton(movie), genreLine(movie), becauseLine(movie)),
    el("span", { className: "score", title: "score (dot product)" }, score),
    withStars ? starButtons(movie) : "",
  );
}

// --- recommendations, rating, history --------------------------------------------------------------------

async function loadRecommendations() {
  writeUrl();
  showState();
  const list = $("recommendation-list");
  if (!state.userId) return;
  const seq = ++recommendSeq;
  list.setAttribute("aria-busy", "true");
  const params = new URLSearchParams({
    user_id: state.userId, k: state.k, exclude_seen: state.excludeSeen, explain: true,
  });
  if (state.timestamp !== null) params.set("timestamp", state.timestamp);
  try {
    const body = await api(`/recommend?${params}`);
    if (seq !== recommendSeq) return;
    if (state.timestamp === null) clockSkew = body.timestamp - Date.now() / 1000;
    showRecommendations(body);
  } catch (error) {
    if (seq !== recommendSeq) return;
    list.replaceChildren();
    $("fallback").hidden = true;
    $("summary").textContent = `Could not recommend: ${error.message}`;
  }
  list.setAttribute("aria-busy", "false");
  list.dataset.query = params; // what the list shows (tests wait on it)
  list.dataset.renders = Number(list.dataset.renders) + 1;
  loadHistory();
}

function showRecommendations(body) {
  $("fallback").hidden = body.personalised;
  const who = body.known_user ? "known user" : body.personalised ? "new user with stored ratings" : "unknown user";
  const edge = body.effective_timestamp < body.timestamp ? "end" : "start";
  const moment = body.effective_timestamp === body.timestamp ? isoMoment(body.timestamp)
    : `${isoMoment(body.timestamp)} (the model reads ${isoMoment(body.effective_timestamp)}, the ${edge} of its data)`;
  $("summary").textContent = `User ${body.user_id}, ${who}, at ${moment}; ${body.history_used} recent ratings read; `
    + `version ${body.model_version}.`;
  $("recommendation-list").replaceChildren(...body.items.map((movie) => movieItem(movie, true)));
}

async function rate(movie, rating) {
  if (!state.userId) return;
  // One second before the asked moment, so the rating is part of the history read at that moment.
  const timestamp = (state.timestamp ?? serverNow()) - 1;
  const body = { user_id: state.userId, movie_id: movie.movie_id, rating, timestamp };
  try {
    const headers = { "Content-Type": "application/json" };
    await api("/ratings", { method: "POST", headers, body: JSON.stringify(body) });
    setStatus(`Rated “${movie.title}” ${rating} of 5 for user ${state.userId}.`);
  } catch (error) {
    setStatus(`Rating not stored: ${error.message}`, true);
    return;
  }
  await loadRecommendations();
  // The rated movie's buttons are gone with it: keep keyboard focus in the list rather than lose it.
  if (document.activeElement === document.body) $("recommendation-list").querySelector("button.title")?.focus();
}

async function loadHistory() {
  const list = $("history-list");
  const userId = state.userId;
  try {
    const ratings = await api(`/users/${encodeURIComponent(userId)}/ratings?limit=50`);
    if (userId !== state.userId) return; // another user was picked meanwhile
    if (!ratings.length) return list.replaceChildren(el("li", { className: "muted" }, "No ratings yet."));
    list.replaceChildren(...ratings.map(historyItem));
  } catch (error) {
    list.replaceChildren(el("li", { className: "error" }, `Could not load the ratings: ${error.message}`));
  }
}

function historyItem(rated) {
  const stars = "★".repeat(Math.round(rated.rating ?? 0));
  const how = rated.rating === null ? "in the training data" : `${stars} ${rated.rating}`;
  const later = state.timestamp !== null && rated.timestamp >= state.timestamp ? " · after the chosen moment" : "";
  return el(
    "li",
    { "data-movie-id": rated.movie_id, "data-source": rated.source, className: later ? "later" : "" },
    titleButton(rated),
    el("div", { className: "muted" }, `rated ${isoMoment(rated.timestamp)} · ${how}${later}`),
  );
}

// --- search and similar movies ---------------------------------------------------------------------------

async function searchTitles(event) {
  event.preventDefault();
  const q = $("q").value.trim();
  const list = $("search-list");
  if (!q) return list.replaceChildren();
  try {
    const movies = await api(`/movies?${new URLSearchParams({ q, limit: 20 })}`);
    if (!movies.length) return list.replaceChildren(el("li", { className: "muted" }, "No title matches."));
    const found = (movie) => el("li", { "data-movie-id": movie.movie_id }, titleButton(movie), " ", genreLine(movie));
    list.replaceChildren(...movies.map(found));
  } catch (error) {
    list.replaceChildren(el("li", { className: "error" }, error.message));
  }
}

async function selectMovie(movieId) {
  state.movie = movieId;
  writeUrl();
  const list = $("similar-list");
  try {
    const body = await api(`/movies/${encodeURIComponent(movieId)}/similar?k=${state.k}`);
    const { name, year } = splitTitle(body.title);
    $("similar-to").textContent = `Closest to ${name}${year ? ` (${year})` : ""}:`;
    list.replaceChildren(...body.items.map((movie) => movieItem(movie, false)));
  } catch (error) {
    $("similar-to").textContent = `No similar movies: ${error.message}`;
    list.replaceChildren();
  }
  list.dataset.movieId = movieId;
  if (document.activeElement?.closest(".movies, .compact")) $("similar").scrollIntoView({ block: "nearest" });
}

// --- model card --------------------------------------------------------------------------------------------

function showModelCard() {
  const { data, metrics } = model;
  const count = (n) => (n ?? 0).toLocaleString("en");
  const stored = data.num_stored_ratings ? ` (${count(data.num_stored_ratings)} from the ratings store)` : "";
  const facts = [
    ["Served version", model.version],
    ["Trained", model.created_at ?? "unknown"],
    ["Data", `${count(data.num_ratings)} ratings${stored}, ${count(data.num_users)} users, `
      + `${count(data.num_movies)} movies (${data.dataset ?? "ratings"})`],
    ["Data's time range", `${isoDate(data.timestamp_min)} to ${isoDate(data.timestamp_max)}`],
    ["Served", `${count(model.num_movies)} movies, ${count(model.num_known_users)} known users`],
    ["Index", `${model.index.kind}, recall@${model.index.recall_k} ${model.index.recall.toFixed(3)}`],
  ];
  $("model-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
  const shown = (value) => (typeof value === "object" ? JSON.stringify(value) : value);
  const configRow = ([key, value]) => el("tr", {}, el("th", { scope: "row" }, key), el("td", {}, shown(value)));
  $("config-table").replaceChildren(...Object.entries(model.config).map(configRow));
  showMetrics(metrics);
  showOnline(model);
  const curve = $("curve");
  curve.onload = () => { curve.hidden = false; $("curve-missing").hidden = true; };
  curve.onerror = () => { curve.hidden = true; $("curve-missing").hidden = false; };
  curve.src = `/model/training_curve.png?version=${encodeURIComponent(model.version)}`;
}

const COLUMNS = [["model", 10], ["most_popular", 10], ["model", 100], ["most_popular", 100]];

function showMetrics(metrics) {
  const heading = (text, scope) => el("th", { scope }, text);
  const cell = (table, k) => el("td", {}, table?.[`top_${k}`]?.toFixed(3) ?? "—");
  const head = el("tr", {}, heading("protocol", "col"),
    ...COLUMNS.map(([who, k]) => heading(`${who === "model" ? "model" : "most popular"} top-${k}`, "col")));
  const split = (p) => metrics.model[p] || metrics.most_popular[p]; // liked/disliked rows where measured
  const protocols = ["A", "B", "B_liked", "B_disliked", "T", "T_liked", "T_disliked"]
    .filter((protocol) => !protocol.includes("_") || split(protocol));
  const rows = protocols.map((protocol) => el("tr", {}, heading(protocol.replace("_", " "), "row"),
    ...COLUMNS.map(([who, k]) => cell(metrics[who][protocol], k))));
  $("metrics-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  const held = (n) => `${(n ?? 0).toLocaleString("en")} held-out ratings`;
  const temporal = metrics.temporal ? `; T: the latest ratings by time (${held(metrics.temporal.test_size)}), `
    + "each asked at its own time" : "";
  const liked = protocols.some((p) => p.endsWith("_liked"))
    ? " Liked: held-out ratings of 4 or 5 stars; disliked: 1 or 2 (a model that listens ranks the first high, the second low)."
    : "";
  $("metrics-note").textContent = Object.keys(metrics.model).length
    ? `A: all movies, B: the user's training movies excluded (what /recommend does), `
      + `on a ${metrics.split} split (${held(metrics.test_size)})${temporal}.${liked}`
    : "A first version from one short fit, not scored: the scored version replaces it when its training ends.";
}

const ONLINE_REFRESH_MS = 5000; // the server re-reads its tallies every few seconds too

// One row per served version (CURRENT's, and the canary's while one is served), from /model's `online`.
function showOnline({ version, canary, online }) {
  const share = (value) => `${(100 * (value ?? 0)).toFixed(1)}%`;
  const heading = (text, scope) => el("th", { scope }, text);
  const names = [version, canary?.version].filter(Boolean);
  const head = el("tr", {}, ...["version", "answers", "then rated", "then liked", "hits at 1/2/3",
    "movies"].map((text) => heading(text, "col")));
  const rows = names.map((name) => {
    const figures = online?.versions?.[name];
    const label = name === version ? `${name} (current)` : `${name} (canary, ${share(canary.share)} of users)`;
    const hits = [1, 2, 3].map((rank) => figures?.hits_by_rank?.[rank] ?? 0).join(" / ");
    return el("tr", {}, heading(label, "row"), el("td", {}, (figures?.impressions ?? 0).toLocaleString("en")),
      el("td", {}, share(figures?.rated_share)), el("td", {}, share(figures?.liked_share)), el("td", {}, hits),
      el("td", {}, (figures?.coverage ?? 0).toLocaleString("en")));
  });
  $("online-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  const days = online?.window_days ?? 7;
  $("online-note").textContent = `An answer counts as rated (liked: 4 stars or more) when its user rates one of `
    + `its movies within ${days} days of it; the same figures on every replica.`;
}

async function refreshOnline() {
  try {
    const latest = await api("/model");
    if (model && latest.version === model.version) showOnline(latest);
  } catch {
    // the next refresh tries again; the card keeps its last figures
  }
}

// --- start -------------------------------------------------------------------------------------------------

async function waitForModel() {
  const ready = await fetch("/readyz").then((response) => response.ok, () => false);
  if (!ready) {
    const seconds = RETRY_MS / 1000;
    setStatus(`No model loaded yet: the service is waiting for a version. Retrying every ${seconds} s…`, true);
    setTimeout(waitForModel, RETRY_MS);
    return;
  }
  model = await api("/model");
  setStatus(`Serving version ${model.version}.`);
  $("date").min = isoDate(model.data.timestamp_min);
  $("date").max = isoDate(model.data.timestamp_max);
  $("k").max = model.settings?.max_k ?? 100;
  showModelCard();
  setInterval(refreshOnline, ONLINE_REFRESH_MS);
  showState();
  document.body.classList.remove("waiting");
  if (state.movie) selectMovie(state.movie);
  await loadRecommendations();
}

function pickUser(userId) {
  $("user-id").value = userId;
  readForm();
  loadRecommendations();
}

function wireControls() {
  const whenReady = (action) => (event) => {
    event.preventDefault();
    if (model) action();
  };
  $("user-form").addEventListener("submit", whenReady(() => { readForm(); loadRecommendations(); }));
  for (const id of ["date", "now", "k", "exclude-seen"]) {
    $(id).addEventListener("change", whenReady(() => { readForm(); loadRecommendations(); }));
  }
  $("random-user").addEventListener("click", whenReady(() => {
    const users = model.data.num_users || model.num_known_users;
    pickUser(String(1 + Math.floor(Math.random() * users)));
  }));
  $("new-user").addEventListener("click", whenReady(() => {
    pickUser(String(NEW_USER_BASE + Math.floor(Math.random() * 1e8)));
  }));
  $("search-form").addEventListener("submit", searchTitles);
}

readUrl();
showState();
wireControls();
document.body.classList.add("waiting");
waitForModel().catch((error) => setStatus(`The service answered with an error: ${error.message}`, true));
