// The narration player: an MCP Apps view (io.modelcontextprotocol/ui, protocol 2026-01-26).
// It speaks JSON-RPC 2.0 with the host over postMessage: ui/initialize, then the host's tool-input and
// tool-result notifications; it reads the live narration through the app-only tool poll_narration
// (tools/call, proxied by the host to the server) and plays what has arrived while the rest is made.
(() => {
  "use strict";

  const PROTOCOL_VERSION = "2026-01-26";
  const POLL_WAIT_S = 10; // the server holds a poll this long for new audio
  const FLOOR_EVERY_MS = 1000; // while playing a finished narration: how often to ask who holds the floor
  const $ = (id) => document.getElementById(id);
  const audio = $("audio");
  const ui = {
    root: $("player"), status: $("status"), voice: $("voice"), seed: $("seed"), play: $("play"),
    playIcon: $("play-icon"), seek: $("seek"), time: $("time"), speed: $("speed"), download: $("download"),
    text: $("text"), again: $("again"), voices: $("voices"), useVoice: $("use-voice"), save: $("save"),
    notice: $("notice"), error: $("error"),
  };

  // ---- JSON-RPC over postMessage with the host (only messages from our parent window count) ----
  let nextId = 1;
  const pending = new Map();
  const send = (message) => window.parent.postMessage(message, "*");
  const notify = (method, params) => send({ jsonrpc: "2.0", method, params: params || {} });
  function request(method, params) {
    const id = nextId++;
    send({ jsonrpc: "2.0", id, method, params: params || {} });
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  }
  window.addEventListener("message", (event) => {
    if (event.source !== window.parent) return;
    const msg = event.data;
    if (!msg || msg.jsonrpc !== "2.0") return;
    if (msg.method === undefined && msg.id !== undefined) {
      const waiter = pending.get(msg.id);
      if (!waiter) return;
      pending.delete(msg.id);
      if (msg.error) waiter.reject(new Error(msg.error.message || "the host refused the request"));
      else waiter.resolve(msg.result);
    } else if (msg.id !== undefined) {
      answer(msg);
    } else if (typeof msg.method === "string") {
      onNotification(msg.method, msg.params || {});
    }
  });
  function answer(msg) {
    if (msg.method === "ui/resource-teardown") {
      stop();
      send({ jsonrpc: "2.0", id: msg.id, result: {} });
    } else if (msg.method === "ping") {
      send({ jsonrpc: "2.0", id: msg.id, result: {} });
    } else {
      send({ jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: `the player has no method ${msg.method}` } });
    }
  }
  async function callTool(name, args) {
    const result = await request("tools/call", { name, arguments: args });
    if (result && result.isError) throw new Error(textOf(result) || `${name} failed`);
    return result;
  }
  const textOf = (result) => (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");

  // ---- host context: theme and style variables ----
  let host = { capabilities: {}, context: {} };
  function applyContext(context) {
    host.context = Object.assign(host.context, context);
    if (context.theme) document.documentElement.dataset.theme = context.theme;
    const variables = (context.styles && context.styles.variables) || {};
    for (const [key, value] of Object.entries(variables)) {
      if (key.startsWith("--") && typeof value === "string") document.documentElement.style.setProperty(key, value);
    }
  }

  // ---- the narration this player follows ----
  let story = null; // {id, text, voice, seed, format, cursor, rate, chunks, samples, segments, count, state, done}
  let generation = 0; // bumps whenever the player follows another narration: older loops stop
  let wantPlay = true; // play as soon as audio arrives, until the person pauses
  let dirty = false; // audio arrived that the <audio> element does not have yet
  let sourceUrl = null;
  let stopped = false;
  let loadingAt = null; // the position a new source will resume at, while it loads
  let continuing = false; // the next "play" resumes after the audio so far ran out: not a new start
  let myFloor = Infinity; // the server's claim count when this player last started playing

  function onNotification(method, params) {
    if (method === "ui/notifications/tool-input") {
      const input = params.arguments || {};
      if (!story && input.text) showText(input.text, []);
    } else if (method === "ui/notifications/tool-result") {
      onToolResult(params);
    } else if (method === "ui/notifications/tool-cancelled") {
      setState("cancelled", `Cancelled${params.reason ? ": " + params.reason : ""}`);
    } else if (method === "ui/notifications/host-context-changed") {
      applyContext(params);
    }
  }

  function onToolResult(result) {
    if (result.isError) return fail(textOf(result) || "the narration failed");
    const live = result.structuredContent;
    if (live && live.narration_id) return follow(live);
    // A result made for a host without the player (a return_mode was asked for): play its inline audio.
    const block = (result.content || []).find((c) => c.type === "audio");
    if (!block) return setState("done", textOf(result) || "Done");
    const bytes = Uint8Array.from(atob(block.data), (ch) => ch.charCodeAt(0));
    setSource(new Blob([bytes], { type: block.mimeType }));
    setState("done", "Ready");
    enable(true);
  }

  function follow(live) {
    if (!host.capabilities.serverTools) {
      // the spec's hosts declare serverTools when they pass a view's tools/call on to the server
      return fail("This host does not pass the player's calls to the server, so the player cannot fetch the " +
        "audio: ask for the narration as a file instead (synthesize with a return_mode).");
    }
    generation += 1;
    story = {
      id: live.narration_id, text: live.text, voice: live.voice, seed: live.seed, format: live.format,
      // asked for once, asked for again: "again" changes only the seed or the voice
      options: { temperature: live.temperature, top_p: live.top_p, pronunciation: live.pronunciation,
        pronunciations: live.pronunciations },
      cursor: 0, rate: 0, chunks: [], samples: 0, segments: [], count: 0, state: live.state, done: false,
    };
    ui.root.dataset.narrationId = story.id;
    ui.error.hidden = true;
    ui.notice.textContent = "";
    ui.seed.textContent = String(story.seed);
    ui.voice.textContent = live.voice || "…";
    if (sourceUrl) URL.revokeObjectURL(sourceUrl);
    sourceUrl = null;
    loadingAt = null;
    audio.removeAttribute("src");
    audio.load();
    dirty = false;
    wantPlay = true;
    showText(story.text, []);
    setState("queued", "Queued");
    enable(false);
    ui.again.disabled = false;
    ui.voices.disabled = false;
    pollLoop(generation, story);
  }

  async function pollLoop(mine, followed) {
    while (!stopped && mine === generation) {
      const playing = !audio.paused && !audio.ended;
      if (followed.done && !playing) {
        await sleep(500);
        continue;
      }
      let result;
      try {
        result = await callTool("poll_narration", {
          narration_id: followed.id,
          cursor: followed.cursor,
          wait_s: followed.done ? 0 : POLL_WAIT_S,
        });
      } catch (err) {
        // All audio is here and only the floor was asked about (the server may have let the narration
        // go after its grace period): keep playing, stop asking.
        if (mine === generation && !followed.done) fail(err.message);
        return;
      }
      if (mine !== generation) return;
      take(followed, result.structuredContent);
      if (followed.done) await sleep(FLOOR_EVERY_MS);
    }
  }

  function take(followed, poll) {
    followed.rate = poll.sample_rate || followed.rate;
    followed.count = poll.segment_count;
    if (poll.voice_name || poll.voice_id) ui.voice.textContent = poll.voice_name || poll.voice_id;
    if (poll.voice_id) followed.voiceId = poll.voice_id;
    if (poll.samples > 0 && poll.start === followed.cursor) {
      const bytes = Uint8Array.from(atob(poll.pcm_s16le), (ch) => ch.charCodeAt(0));
      followed.chunks.push(bytes);
      followed.samples += poll.samples;
      dirty = true;
    }
    followed.cursor = poll.next_cursor;
    if (poll.segments.length !== followed.segments.length) {
      followed.segments = poll.segments;
      showText(followed.text, followed.segments);
    }
    if (poll.speaking && poll.speaking !== followed.id && poll.floor > myFloor && !audio.paused) {
      wantPlay = false;
      audio.pause(); // another player started after this one: this one stops talking
    }
    followed.done = poll.done;
    followed.state = poll.state;
    if (poll.state === "failed") fail(poll.message);
    else if (poll.state === "cancelled") setState("cancelled", poll.message);
    else if (poll.state === "done") setState("done", poll.done ? "Ready" : "Receiving the audio");
    else if (poll.state === "queued") setState("queued", `Queued: ${poll.message}`);
    else {
      const k = Math.min((poll.segments_done || 0) + 1, followed.count || 1); // a streamed segment comes in chunks
      setState("generating", followed.count ? `Generating segment ${k} of ${followed.count}` : "Generating");
    }
    if (followed.samples > 0) {
      enable(true);
      ui.download.disabled = !followed.done || followed.state !== "done";
      ui.save.disabled = ui.download.disabled;
    }
    refresh(false);
    tick();
    syncPlayButton();
  }

  // ---- audio: everything received so far as one WAV blob, swapped in when playback needs more ----
  function wavOf(followed) {
    const bytes = followed.samples * 2;
    const header = new DataView(new ArrayBuffer(44));
    const ascii = (offset, text) => [...text].forEach((ch, i) => header.setUint8(offset + i, ch.charCodeAt(0)));
    ascii(0, "RIFF"); header.setUint32(4, 36 + bytes, true); ascii(8, "WAVE");
    ascii(12, "fmt "); header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
    header.setUint32(24, followed.rate, true); header.setUint32(28, followed.rate * 2, true);
    header.setUint16(32, 2, true); header.setUint16(34, 16, true);
    ascii(36, "data"); header.setUint32(40, bytes, true);
    return new Blob([header, ...followed.chunks], { type: "audio/wav" });
  }

  function setSource(blob, position) {
    const url = URL.createObjectURL(blob);
    if (sourceUrl) URL.revokeObjectURL(sourceUrl);
    sourceUrl = url;
    loadingAt = position || 0;
    audio.src = url;
    audio.addEventListener("loadedmetadata", () => {
      audio.playbackRate = Number(ui.speed.value);
      if (position) audio.currentTime = Math.min(position, audio.duration || position);
      loadingAt = null;
      syncPlayButton();
      if (wantPlay) startPlaying();
    }, { once: true });
  }

  // While audio plays, new pieces wait for the end of what it has (no cut mid-word); otherwise they go in now.
  function refresh(force) {
    if (!dirty || !story || !story.rate) return;
    if (!force && !audio.paused && !audio.ended) return;
    dirty = false;
    const position = audio.ended ? audio.duration : audio.currentTime;
    setSource(wavOf(story), position);
  }

  function startPlaying() {
    const playing = audio.play();
    if (playing) playing.catch(() => {
      wantPlay = false; // the host's frame may forbid autoplay: the person presses play
      ui.notice.textContent = "Press play to listen.";
      syncPlayButton();
    });
  }

  audio.addEventListener("play", () => {
    ui.notice.textContent = "";
    syncPlayButton();
    if (story && !continuing) claimFloor(story); // a start (not a resume after new audio) takes the floor
    continuing = false;
  });
  audio.addEventListener("pause", syncPlayButton);
  audio.addEventListener("timeupdate", tick);
  audio.addEventListener("ended", () => {
    if (dirty && wantPlay) {
      continuing = true;
      refresh(true);
    } else if (dirty) refresh(true);
    else if (story && story.done) wantPlay = false;
    syncPlayButton();
  });

  async function claimFloor(followed) {
    try {
      const result = await callTool("poll_narration", {
        narration_id: followed.id, cursor: followed.cursor, wait_s: 0, claim: true,
      });
      myFloor = result.structuredContent.floor;
      if (followed === story) take(followed, result.structuredContent);
    } catch (err) {
      // the floor is a courtesy: a failed claim leaves playback alone
    }
  }

  // ---- controls ----
  ui.play.addEventListener("click", togglePlay);
  function togglePlay() {
    if (audio.paused || audio.ended) {
      wantPlay = true;
      if (audio.ended && !dirty) audio.currentTime = 0;
      if (dirty) refresh(true);
      else startPlaying();
    } else {
      wantPlay = false;
      audio.pause();
    }
  }
  function syncPlayButton() {
    const playing = !audio.paused && !audio.ended;
    ui.play.setAttribute("aria-label", playing ? "Pause" : "Play");
    ui.playIcon.textContent = playing ? "❚❚" : "▶";
    ui.root.dataset.playing = String(playing);
  }
  ui.seek.addEventListener("input", () => seekTo(Number(ui.seek.value)));
  function seekTo(seconds) {
    if (!story && !sourceUrl) return;
    if (dirty && story && seconds > (audio.duration || 0)) {
      dirty = false;
      setSource(wavOf(story), seconds);
    } else {
      audio.currentTime = Math.max(0, Math.min(seconds, audio.duration || 0));
    }
    tick();
  }
  ui.speed.addEventListener("change", () => {
    audio.playbackRate = Number(ui.speed.value);
    audio.defaultPlaybackRate = Number(ui.speed.value);
  });
  // Space or k plays and pauses, the arrows skip 5 s (on the slider too: its own step is too fine for keys).
  ui.root.addEventListener("keydown", (event) => {
    const tag = event.target.tagName;
    if (tag === "SELECT" || tag === "BUTTON") return;
    if (event.key === " " || event.key === "k") { event.preventDefault(); togglePlay(); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); seekTo(audio.currentTime - 5); }
    else if (event.key === "ArrowRight") { event.preventDefault(); seekTo(audio.currentTime + 5); }
  });

  ui.download.addEventListener("click", async () => {
    if (!story) return;
    const blob = wavOf(story);
    const name = `narration-${story.id}.wav`;
    if (host.capabilities.downloadFile) {
      const data = await blobBase64(blob);
      const contents = [{ type: "resource", resource: { uri: `file:///${name}`, mimeType: "audio/wav", blob: data } }];
      try {
        const result = await request("ui/download-file", { contents });
        if (!result || !result.isError) return;
      } catch (err) {
        // fall through to the frame's own download link
      }
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  });

  ui.again.addEventListener("click", () => narrateAgain({ seed: randomSeed() }));
  ui.voices.addEventListener("focus", loadVoices);
  ui.voices.addEventListener("change", () => { ui.useVoice.disabled = !ui.voices.value; });
  ui.useVoice.addEventListener("click", () => {
    if (ui.voices.value) narrateAgain({ voice: ui.voices.value });
  });
  ui.save.addEventListener("click", async () => {
    if (!story) return;
    ui.save.disabled = true;
    try {
      const result = await callTool("save_narration", { narration_id: story.id, format: story.format });
      const saved = result.structuredContent;
      ui.notice.textContent = `Saved to ${saved.path}`;
      if (host.capabilities.updateModelContext) {
        const text = `The person saved the narration to ${saved.path} (${saved.uri}, ${saved.duration_s} s).`;
        request("ui/update-model-context", { content: [{ type: "text", text }] }).catch(() => {});
      }
    } catch (err) {
      ui.save.disabled = false;
      showError(err.message);
    }
  });

  async function narrateAgain(change) {
    if (!story) return;
    const args = {
      text: story.text,
      voice: change.voice || story.voiceId || story.voice,
      seed: change.seed !== undefined ? change.seed : story.seed,
    };
    for (const [name, value] of Object.entries(story.options)) {
      if (value !== null && value !== undefined) args[name] = value;
    }
    ui.again.disabled = true;
    ui.useVoice.disabled = true;
    setState("queued", "Starting again");
    try {
      const result = await callTool("synthesize", args);
      if (!result.structuredContent || !result.structuredContent.narration_id) throw new Error(textOf(result));
      wantPlay = true;
      follow(result.structuredContent);
    } catch (err) {
      fail(err.message);
      ui.again.disabled = false;
    }
  }

  let voicesLoaded = false;
  async function loadVoices() {
    if (voicesLoaded) return;
    voicesLoaded = true;
    try {
      const result = await callTool("list_voices", { limit: 200 });
      const voices = (result.structuredContent && result.structuredContent.voices) || [];
      ui.voices.replaceChildren(new Option("(choose a voice)", ""));
      for (const v of voices) {
        if (!v.broken) ui.voices.add(new Option(v.name ? `${v.name} (${v.voice_id})` : v.voice_id, v.voice_id));
      }
    } catch (err) {
      voicesLoaded = false;
      showError(err.message);
    }
  }

  // ---- what the person sees ----
  function showText(text, segments) {
    ui.text.replaceChildren();
    if (!segments.length) {
      const span = document.createElement("span");
      span.className = "pending";
      span.textContent = text || "";
      ui.text.append(span);
      return;
    }
    for (const seg of segments) {
      const span = document.createElement("span");
      span.className = "seg";
      span.dataset.index = String(seg.index);
      span.textContent = seg.text;
      ui.text.append(span, " ");
    }
    if (story && story.count > segments.length) {
      const rest = document.createElement("span");
      rest.className = "pending";
      rest.textContent = `(${story.count - segments.length} more segment(s) on the way)`;
      ui.text.append(rest);
    }
    tick();
  }

  function tick() {
    const duration = story && story.rate ? story.samples / story.rate : audio.duration || 0;
    const now = loadingAt !== null ? loadingAt : audio.currentTime || 0;
    ui.seek.max = String(duration || 0);
    ui.seek.value = String(Math.min(now, duration || 0));
    const spoken = `${clock(now)} of ${clock(duration)}`;
    ui.seek.setAttribute("aria-valuetext", spoken);
    ui.time.textContent = `${clock(now)} / ${clock(duration)}`;
    if (!story || !story.rate) return;
    const sample = now * story.rate;
    let current = null;
    for (const seg of story.segments) if (seg.start_sample <= sample) current = seg.index;
    for (const span of ui.text.querySelectorAll(".seg")) {
      const on = Number(span.dataset.index) === current;
      span.classList.toggle("now", on);
      if (on) span.setAttribute("aria-current", "true");
      else span.removeAttribute("aria-current");
    }
    ui.root.dataset.segment = current === null ? "" : String(current);
  }

  function setState(state, text) {
    ui.root.dataset.state = state;
    ui.status.textContent = text;
  }
  function fail(message) {
    setState("failed", "Failed");
    showError(message);
  }
  function showError(message) {
    ui.error.hidden = false;
    ui.error.textContent = message;
  }
  function enable(on) {
    ui.play.disabled = !on;
    ui.seek.disabled = !on;
  }
  function stop() {
    stopped = true;
    generation += 1;
    audio.pause();
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const clock = (s) => {
    const whole = Math.max(0, Math.floor(s || 0));
    return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
  };
  const randomSeed = () => crypto.getRandomValues(new Uint32Array(1))[0] & 0x7fffffff;
  function blobBase64(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  // ---- start: ui/initialize, then tell the host our size as it changes ----
  async function start() {
    try {
      const result = await request("ui/initialize", {
        appInfo: { name: "glmtts-mcp player", version: "1" },
        appCapabilities: {},
        protocolVersion: PROTOCOL_VERSION,
      });
      host.capabilities = result.hostCapabilities || {};
      applyContext(result.hostContext || {});
      notify("ui/notifications/initialized");
    } catch (err) {
      fail(`the host did not start the player: ${err.message}`);
      return;
    }
    let last = 0;
    new ResizeObserver(() => {
      const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
      if (height !== last) {
        last = height;
        notify("ui/notifications/size-changed", { height });
      }
    }).observe(document.documentElement);
  }
  start();
})();
