// The page's behaviour: talks to /api only, shows the server's own error sentences.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 50;
let nextCursor = null;
let highlightId = null;

// --- talking to the server ------------------------------------------------------------------

async function errorSentence(response) {
  try {
    const body = await response.json();
    if (typeof body.error === "string") return body.error;
    if (body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("sign in first");
  }
  if (!response.ok) throw new Error(await errorSentence(response));
  return response;
}

async function apiJson(path, options = {}) {
  return (await api(path, options)).json();
}

function showError(error) {
  const box = $("alert");
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
}

function clearError() {
  $("alert").hidden = true;
  $("alert").textContent = "";
}

// --- voices ---------------------------------------------------------------------------------

function formatDate(value) {
  return value ? new Date(value).toLocaleString() : "never";
}

function voiceItem(voice) {
  const item = document.createElement("li");
  item.className = "voice";
  item.dataset.voiceId = voice.voice_id;
  if (voice.voice_id === highlightId) item.classList.add("highlight");

  const title = document.createElement("div");
  title.className = "voice-title";
  const name = document.createElement("strong");
  name.className = "voice-name";
  name.textContent = voice.name || voice.voice_id;
  title.append(name);
  if (voice.broken) title.append(flag(`broken: ${voice.broken}`, "broken"));
  else if (voice.stale) title.append(flag("stale: re-extracted on next use", "stale"));
  item.append(title);

  const excerpt = document.createElement("p");
  excerpt.className = "excerpt";
  excerpt.textContent = voice.transcript_excerpt || "";
  item.append(excerpt);

  const meta = document.createElement("p");
  meta.className = "muted meta";
  const duration = voice.duration_s != null ? `${voice.duration_s.toFixed(1)} s` : "? s";
  meta.textContent = `${duration} · ${voice.language || "language unknown"} · created ${formatDate(voice.created_at)}` +
    ` · last used ${formatDate(voice.last_used_at)} · ${voice.voice_id}`;
  item.append(meta);

  const actions = document.createElement("div");
  actions.className = "actions";
  const label = voice.name || voice.voice_id;
  actions.append(
    button("Play reference", `Play the reference clip of ${label}`, () => playReference(item, voice)),
    button("Use", `Speak with ${label}`, () => { $("speak-voice").value = voice.voice_id; $("speak-text").focus(); }),
    button("Rename", `Rename ${label}`, () => renameVoice(voice)),
    link("Export", `Download ${label} as an archive`, `/api/voices/${encodeURIComponent(voice.voice_id)}/export`),
    button("Delete", `Delete ${label}`, () => deleteVoice(voice), "danger"),
  );
  item.append(actions);
  return item;
}

function flag(text, kind) {
  const span = document.createElement("span");
  span.className = `flag ${kind}`;
  span.textContent = text;
  return span;
}

function button(text, label, onClick, extraClass) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  if (extraClass) b.classList.add(extraClass);
  b.addEventListener("click", () => { clearError(); Promise.resolve(onClick()).catch(showError); });
  return b;
}

function link(text, label, href) {
  const a = document.createElement("a");
  a.className = "button-link";
  a.textContent = text;
  a.href = href;
  a.setAttribute("aria-label", label);
  a.setAttribute("download", "");
  return a;
}

function playReference(item, voice) {
  let audio = item.querySelector("audio");
  if (!audio) {
    audio = document.createElement("audio");
    audio.controls = true;
    audio.src = `/api/voices/${encodeURIComponent(voice.voice_id)}/audio`;
    audio.setAttribute("aria-label", `reference clip of ${voice.name || voice.voice_id}`);
    item.append(audio);
  }
  return audio.play();
}

async function loadVoices(append = false) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const query = $("voice-search").value.trim();
  if (query) params.set("query", query);
  if (append && nextCursor) params.set("cursor", nextCursor);
  const page = await apiJson(`/api/voices?${params}`);
  const list = $("voice-list");
  if (!append) list.replaceChildren();
  page.voices.forEach((voice) => list.append(voiceItem(voice)));
  nextCursor = page.next_cursor;
  $("more-voices").hidden = !nextCursor;
  $("voices-empty").hidden = list.children.length > 0;
  const marked = highlightId && list.querySelector(`[data-voice-id="${highlightId}"]`);
  if (marked) marked.scrollIntoView({ block: "nearest" });
}

async function loadVoiceChoices() {
  const select = $("speak-voice");
  const chosen = select.value;
  const page = await apiJson("/api/voices?limit=200");
  select.replaceChildren(...page.voices.filter((v) => !v.broken).map((v) => {
    const option = document.createElement("option");
    option.value = v.voice_id;
    option.textContent = v.name || v.voice_id;
    return option;
  }));
  if (chosen && [...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

async function refreshAll() {
  await Promise.all([loadVoices(), loadVoiceChoices().then(loadPronunciationScopes), loadStats()]);
  await loadPronunciations();
}

async function renameVoice(voice) {
  const name = window.prompt(`New name for ${voice.name || voice.voice_id}:`, voice.name || "");
  if (name === null || !name.trim() || name.trim() === voice.name) return;
  await api(`/api/voices/${encodeURIComponent(voice.voice_id)}`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: name.trim() }),
  });
  highlightId = voice.voice_id;
  await refreshAll();
}

async function deleteVoice(voice) {
  if (!window.confirm(`Delete the voice ${voice.name || voice.voice_id}? Its stored files are removed.`)) return;
  await api(`/api/voices/${encodeURIComponent(voice.voice_id)}`, { method: "DELETE" });
  await refreshAll();
}

// --- clone and import -----------------------------------------------------------------------

function uploadWithProgress(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.upload.addEventListener("load", () => onProgress(null));
    request.addEventListener("load", () => {
      const body = request.response || {};
      if (request.status === 401) { window.location.assign("/login"); reject(new Error("sign in first")); }
      else if (request.status >= 200 && request.status < 300) resolve({ status: request.status, body });
      else reject(new Error(typeof body.error === "string" ? body.error : `${request.status} ${request.statusText}`));
    });
    request.addEventListener("error", () => reject(new Error("the server could not be reached")));
    request.send(form);
  });
}

async function cloneVoice(event) {
  event.preventDefault();
  clearError();
  const file = $("clone-file").files[0];
  if (!file) { showError("Choose or drop a recording first."); return; }
  const form = new FormData();
  form.append("audio", file, file.name);
  for (const [field, id] of [["name", "clone-name"], ["transcript", "clone-transcript"], ["language", "clone-language"]]) {
    const value = $(id).value.trim();
    if (value) form.append(field, value);
  }
  const progress = $("clone-progress");
  const status = $("clone-status");
  $("clone-button").disabled = true;
  progress.hidden = false;
  progress.value = 0;
  status.textContent = "uploading…";
  try {
    const { body } = await uploadWithProgress("/api/voices", form, (share) => {
      if (share === null) { progress.removeAttribute("value"); status.textContent = "cloning (extracting the voice)…"; }
      else progress.value = Math.round(share * 100);
    });
    highlightId = body.voice_id;
    status.textContent = body.existed ? `already in the library: ${body.name}` : `cloned: ${body.name}`;
    $("voice-search").value = "";
    await refreshAll();
    $("speak-voice").value = body.voice_id;
  } catch (error) {
    status.textContent = "";
    showError(error);
  } finally {
    progress.hidden = true;
    $("clone-button").disabled = false;
  }
}

async function importVoice(event) {
  event.preventDefault();
  clearError();
  const file = $("import-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("archive", file, file.name);
  try {
    const { body } = await uploadWithProgress("/api/voices/import", form, () => {});
    highlightId = body.voice_id;
    await refreshAll();
  } catch (error) {
    showError(error);
  }
}

function setUpDropZone() {
  const zone = $("drop-zone");
  const input = $("clone-file");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer.files.length) input.files = event.dataTransfer.files;
  });
}

// --- speak ----------------------------------------------------------------------------------

const SAMPLE_RATE_HEADER = "x-sample-rate";

function wavHeader(dataBytes, sampleRate) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + dataBytes, true); text(8, "WAVE");
  text(12, "fmt "); header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, sampleRate, true); header.setUint32(28, sampleRate * 2, true);
  header.setUint16(32, 2, true); header.setUint16(34, 16, true);
  text(36, "data"); header.setUint32(40, dataBytes, true);
  return header.buffer;
}

// Plays 16-bit PCM pieces as they arrive (Web Audio), so the first segment is heard before the last is made.
class PcmPlayer {
  constructor(sampleRate) {
    this.sampleRate = sampleRate;
    this.leftover = null;
    this.at = 0;
    try { this.context = new AudioContext(); } catch (_) { this.context = null; }
  }

  push(bytes) {
    let data = bytes;
    if (this.leftover) { data = new Uint8Array(this.leftover.length + bytes.length); data.set(this.leftover); data.set(bytes, this.leftover.length); }
    const usable = data.length - (data.length % 2);
    this.leftover = usable < data.length ? data.slice(usable) : null;
    if (!this.context || usable === 0) return;
    const view = new DataView(data.buffer, data.byteOffset, usable);
    const buffer = this.context.createBuffer(1, usable / 2, this.sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < channel.length; i++) channel[i] = view.getInt16(i * 2, true) / 32768;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    this.at = Math.max(this.at, this.context.currentTime + 0.05);
    source.start(this.at);
    this.at += buffer.duration;
  }
}

async function speak(event) {
  event.preventDefault();
  clearError();
  const format = $("speak-format").value;
  const seed = Number.parseInt($("speak-seed").value || "0", 10);
  const body = { text: $("speak-text").value, voice: $("speak-voice").value, format: format === "wav" ? "pcm" : format, seed };
  if ($("speak-pronunciation").value) body.pronunciation = $("speak-pronunciation").value;
  const status = $("speak-status");
  const audio = $("speech-audio");
  const download = $("speech-download");
  $("speak-button").disabled = true;
  download.hidden = true;
  status.textContent = "synthesizing…";
  try {
    const response = await api("/api/tts", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    let blob;
    if (format === "wav") {
      const sampleRate = Number.parseInt(response.headers.get(SAMPLE_RATE_HEADER) || "24000", 10);
      const player = new PcmPlayer(sampleRate);
      const pieces = [];
      let bytes = 0;
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        pieces.push(value);
        bytes += value.length;
        player.push(value);
        status.textContent = `playing while synthesizing… ${(bytes / 2 / sampleRate).toFixed(1)} s so far`;
      }
      blob = new Blob([wavHeader(bytes, sampleRate), ...pieces], { type: "audio/wav" });
    } else {
      blob = await response.blob();
    }
    if (audio.src) URL.revokeObjectURL(audio.src);
    audio.src = URL.createObjectURL(blob);
    if (format !== "wav") audio.play().catch(() => {});
    download.href = audio.src;
    download.download = `speech.${format}`;
    download.hidden = false;
    status.textContent = `done: ${response.headers.get("x-segments") || "?"} segment(s), voice ${response.headers.get("x-voice-name") || ""}`;
    const asRead = response.headers.get("x-text-as-read");
    $("speech-as-read").textContent = asRead ? `read as (${response.headers.get("x-pronunciation")}): ${decodeURIComponent(asRead)}` : "";
    loadStats().catch(() => {});
  } catch (error) {
    status.textContent = "";
    showError(error);
  } finally {
    $("speak-button").disabled = false;
  }
}

// --- pronunciation dictionaries -------------------------------------------------------------

function dictionaryPath() {
  const voice = $("pronounce-scope").value;
  return voice ? `/api/voices/${encodeURIComponent(voice)}/pronunciations` : "/api/pronunciations";
}

async function loadPronunciations() {
  const body = await apiJson(dictionaryPath());
  const list = $("pronounce-list");
  list.replaceChildren();
  for (const entry of body.entries) {
    const item = document.createElement("li");
    item.className = "voice";
    const line = document.createElement("span");
    line.textContent = `${entry.text} → ${entry.reading} (${entry.kind}) `;
    item.append(line, button("Remove", `Remove the entry ${entry.text}`, async () => {
      await api(`${dictionaryPath()}/${encodeURIComponent(entry.text)}`, { method: "DELETE" });
      await loadPronunciations();
    }));
    list.append(item);
  }
}

// --- scripts: several voices, one file, a track list that follows the audio ---------------------

let scriptLines = [];

function textLink(id, text, type) {
  const anchor = $(id);
  if (anchor.href.startsWith("blob:")) URL.revokeObjectURL(anchor.href);
  anchor.href = URL.createObjectURL(new Blob([text], { type }));
}

function showScriptLines(lines) {
  const list = $("script-lines");
  list.replaceChildren();
  scriptLines = lines.filter((line) => line.output === 0);
  for (const line of scriptLines) {
    const item = document.createElement("li");
    const seek = document.createElement("button");
    seek.type = "button";
    seek.className = "script-line";
    seek.setAttribute("aria-label", `Play line ${line.line} from ${(line.start_ms / 1000).toFixed(1)} s`);
    seek.textContent = `${(line.start_ms / 1000).toFixed(1)} s  ${line.voice_name || line.voice}: ${line.text}`;
    seek.addEventListener("click", () => {
      const audio = $("script-audio");
      audio.currentTime = line.start_ms / 1000;
      audio.play().catch(() => {});
    });
    item.append(seek);
    list.append(item);
  }
}

async function loadPronunciationScopes() {
  const scope = $("pronounce-scope");
  const chosen = scope.value;
  const voices = $("speak-voice");
  scope.replaceChildren(new Option("global (every voice)", ""));
  for (const option of voices.options) scope.append(new Option(`voice ${option.textContent}`, option.value));
  scope.value = [...scope.options].some((o) => o.value === chosen) ? chosen : "";
}

async function previewWord() {
  const text = $("pronounce-text").value.trim();
  if (!text) throw new Error("type the word to preview first");
  const body = { text, pronunciation: $("speak-pronunciation").value || null };
  if ($("pronounce-scope").value) body.voice = $("pronounce-scope").value;
  const reading = $("pronounce-reading").value.trim();
  if (reading) body.pronunciations = { [text]: reading };
  const result = await apiJson("/api/pronunciations/preview", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  $("pronounce-status").textContent = `read as (${result.pronunciation}): ${result.text_as_read}`;
}

async function addPronunciation(event) {
  event.preventDefault();
  clearError();
  try {
    const result = await apiJson(dictionaryPath(), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text: $("pronounce-text").value, reading: $("pronounce-reading").value }),
    });
    $("pronounce-status").textContent = result.message || "added";
    await loadPronunciations();
  } catch (error) {
    showError(error);
  }
}

function highlightScriptLine() {
  const ms = $("script-audio").currentTime * 1000;
  $("script-lines").querySelectorAll("li").forEach((item, index) => {
    const line = scriptLines[index];
    item.classList.toggle("current", ms >= line.start_ms && ms < line.end_ms);
  });
}

async function narrateScript(event) {
  event.preventDefault();
  clearError();
  const format = $("script-format").value;
  const status = $("script-status");
  $("script-button").disabled = true;
  $("script-downloads").hidden = true;
  status.textContent = "narrating the script…";
  try {
    const result = await apiJson("/api/scripts", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ script: $("script-text").value, format, cues: $("script-cues").value }),
    });
    const first = result.outputs[0];
    const audio = $("script-audio");
    audio.src = first.url;
    $("script-download").href = first.url;
    textLink("script-srt", first.srt, "application/x-subrip");
    textLink("script-vtt", first.vtt, "text/vtt");
    $("script-downloads").hidden = false;
    showScriptLines(result.lines);
    status.textContent = `done: ${result.lines.length} line(s) in ${Object.keys(result.voices).length} voice(s), ${first.duration_s.toFixed(1)} s`;
    loadStats().catch(() => {});
  } catch (error) {
    status.textContent = "";
    showError(error);
  } finally {
    $("script-button").disabled = false;
  }
}

// --- statistics -----------------------------------------------------------------------------

function formatBytes(n) {
  if (n == null) return "?";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

async function loadStats() {
  const s = await apiJson("/api/cache/stats");
  const e = s.engine || {};
  const rows = [
    ["Voices", `${s.voice_count} (${s.broken_voices} broken, ${s.stale_voices} stale)`],
    ["Hits: memory / device / disk", `${s.memory_hits} / ${s.device_hits} / ${s.disk_hits}`],
    ["Misses", String(s.misses)],
    ["Clones: new / already known", `${s.clones_created} / ${s.clones_existing}`],
    ["Extraction time saved", `${(s.extraction_s_saved || 0).toFixed(1)} s`],
    ["Bytes: disk / memory / device", `${formatBytes(s.disk_bytes)} / ${formatBytes(s.memory_bytes)} / ${formatBytes(s.device_bytes)}`],
    ["Model", e.model_loaded ? (e.ray ? "loaded on Ray replicas" : `loaded on ${e.device}`) : (e.model_error ? `not loaded: ${e.model_error}` : "not loaded yet (loads on first use)")],
    ["Queue", `${e.active_jobs} active, ${e.queue_depth ?? 0} waiting`],
  ];
  if (e.ray) {  // --engine ray: one line per replica, and what the front sent them
    rows.push(["Engine", `Ray (${e.ray.address}): ${e.ray.replicas.length} replica(s) of ${e.ray.replicas_wanted}; ` +
      `voice features sent ${e.ray.voice_sends}, resent ${e.ray.voice_resends}; retries ${e.ray.retries}`]);
    for (const r of e.ray.replicas) {
      rows.push([`Replica ${r.replica.split("#").pop()}`, `${r.device}, ${r.active} active, ${r.voices_held} voices held, ` +
        `${r.voice_hits} voice hits, ${r.requests} requests`]);
    }
  }
  $("stats").replaceChildren(...rows.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  }));
}

// --- start ----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  setUpDropZone();
  $("clone-form").addEventListener("submit", cloneVoice);
  $("import-form").addEventListener("submit", importVoice);
  $("speak-form").addEventListener("submit", speak);
  $("script-form").addEventListener("submit", narrateScript);
  $("script-audio").addEventListener("timeupdate", highlightScriptLine);
  $("more-voices").addEventListener("click", () => loadVoices(true).catch(showError));
  $("stats-refresh").addEventListener("click", () => loadStats().catch(showError));
  $("pronounce-form").addEventListener("submit", addPronunciation);
  $("pronounce-preview").addEventListener("click", () => { clearError(); previewWord().catch(showError); });
  $("pronounce-scope").addEventListener("change", () => loadPronunciations().catch(showError));
  let searchTimer = null;
  $("voice-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadVoices().catch(showError), 250);
  });
  refreshAll().catch(showError);
});
