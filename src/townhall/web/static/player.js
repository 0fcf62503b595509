// The live player: joins a space (or waits in line), then reads the live
// stream with fetch() into Media Source Extensions, which measured at about a
// third of a second behind live where a plain <audio src> sits 2-3 s behind
// (Chromium waits for ~32 KB before it starts). Falls back to low-latency HLS
// with hls.js (browsers whose MSE takes fMP4 but not raw AAC, or `?via=hls`
// where a CDN carries the crowd), then native HLS, then <audio src=live_url>.
// A dropped stream reconnects with exponential back-off and jitter, re-joining
// with its ticket: the answer names the node that streams the space now (the
// one that streamed it may have died), and the ticket is honoured there without
// a second wait in line.

import { ApiError, post, spacePath } from './api.js';
import { solve } from './pow.js';
import { sleep } from './ui.js';

const MSE_TYPE = 'audio/aac';
const FMP4_TYPE = 'audio/mp4; codecs="mp4a.40.2"';
const HLS_TYPE = 'application/vnd.apple.mpegurl';
import { chooseHlsRendition } from './rendition.js';

/** hls.js, vendored (static/vendor), loaded only by browsers that need it. */
const HLS_JS = './vendor/hls.light.min.mjs';
/** Playback further than this behind the buffered end is pulled forward... */
const LIVE_EDGE_MAX_S = 1.5;
/** ...to this far behind it: enough to ride out a late 100 ms chunk. */
const LIVE_EDGE_TARGET_S = 0.3;
/** Audio kept behind the playhead; older audio is removed from the SourceBuffer. */
const KEEP_BEHIND_S = 30;
/** Trim only once this much extra has piled up, so remove() runs rarely. */
const TRIM_SLACK_S = 10;
/** Bytes waiting for the SourceBuffer (~3 min at 48 kbps). Past it, reconnect. */
const MAX_PENDING_BYTES = 1024 * 1024;
/** A ticket this close to expiry is not re-used. */
const TICKET_MARGIN_MS = 10_000;
/** SourceBuffer operations (an append, then maybe a trim) to wait out before a reset. */
const MAX_UPDATE_WAITS = 4;
/** Floor for the waiting room's retry_after_s, in case a server sends 0. */
const MIN_WAIT_RETRY_S = 0.5;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 20_000;
/** A connection that lasted this long counts as healthy and resets the back-off. */
const HEALTHY_CONNECTION_MS = 10_000;
/** HTTP answers after which the ticket is useless and we join again. */
const REJOIN_STATUSES = new Set([401, 403, 404, 410]);
/** Answers that mean this person cannot listen at all: stop trying. */
const FATAL_CODES = new Set(['removed', 'space_ended', 'ended', 'not_found']);

class StreamError extends Error {
  constructor(res) {
    super(`The live stream answered HTTP ${res.status}.`);
    this.status = res.status;
    const retryAfter = Number(res.headers.get('Retry-After'));
    this.retryAfterS = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null;
  }
}

/**
 * How this browser will play the stream: 'mse', 'hlsjs', 'hls' or 'element'.
 * `preferred` 'hls' (the page's ?via=hls) skips the live stream for HLS.
 */
export function chooseDelivery(audio, preferred = '') {
  const mse = window.MediaSource || window.ManagedMediaSource;
  if (preferred !== 'hls' && mse && mse.isTypeSupported(MSE_TYPE)) return 'mse';
  if (mse && mse.isTypeSupported(FMP4_TYPE)) return 'hlsjs';
  if (audio.canPlayType(HLS_TYPE) === 'probably') return 'hls';
  return 'element';
}

function backoffMs(attempt) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * Plays one space live in an <audio> element.
 *
 * `state` is one of idle, joining, waiting, connecting, playing,
 * reconnecting, stopped, ended, error; listeners of the 'change' event read it
 * together with `wait` (the waiting room place), `retryInS` and `error`.
 */
export class LivePlayer extends EventTarget {
  /**
   * `joinAnonymously` (optional): how a join with nothing to show is asked (the listen
   * page sends it to the stream workers); joins with a ticket, a queue token or a proof
   * of work always go to the API.
   */
  constructor(audio, spaceId, { preferred = '', joinAnonymously = null } = {}) {
    super();
    this.audio = audio;
    this.spaceId = spaceId;
    this.joinAnonymously = joinAnonymously;
    this.state = 'idle';
    this.bytesReceived = 0;
    this.delivery = chooseDelivery(audio, preferred);
    /** The hls.js instance while delivery is 'hlsjs' (its latency is read by tests). */
    this.hls = null;
    /** Which HLS rendition hls.js plays: 'opus' or 'aac' (rendition.js). */
    this.hlsCodec = null;
    this.wait = null;
    this.error = null;
    this.retryInS = 0;
    this.reconnects = 0;
    this.edgeSkips = 0;
    this.overflows = 0;
    this._ticket = null;
    /** The live stream dropped: ask where to listen now, with the ticket in hand. */
    this._rejoin = false;
    this._run = null;
    this._mse = null;
    this._conn = null;
    /**
     * Asked before every reconnect (the page sets it): a stream that ends because the
     * space ended must not be re-joined (the join would only answer 409). Resolves false
     * when the space is no longer live.
     */
    this.isStillLive = null;
    audio.addEventListener('playing', () => this._running() && this._set('playing'));
    audio.addEventListener('waiting', () => this._running() && this._set('connecting'));
  }

  /** Seconds between the playhead and the newest audio received. */
  get lagS() {
    const { buffered, currentTime } = this.audio;
    if (!buffered.length) return null;
    return Math.max(0, buffered.end(buffered.length - 1) - currentTime);
  }

  get playing() {
    return this._running();
  }

  /** Starts listening; resolves at once, progress is reported through 'change'. */
  start() {
    if (this._running()) return;
    const run = { controller: new AbortController() };
    this._run = run;
    this.error = null;
    this._loop(run).catch((err) => this._fail(run, err));
  }

  /** Stops listening and releases the stream. */
  stop(state = 'stopped') {
    if (this._run) this._run.controller.abort();
    this._run = null;
    this._teardownMedia();
    this.wait = null;
    this._set(state);
  }

  _running() {
    return this._run !== null;
  }

  _set(state) {
    this.state = state;
    this.dispatchEvent(new Event('change'));
  }

  _fail(run, err) {
    if (run !== this._run) return;
    this.error = err.message || String(err);
    this.stop('error');
  }

  async _loop(run) {
    const { signal } = run.controller;
    let attempt = 0;
    while (!signal.aborted) {
      let connectedAt = Infinity;
      let waitS = 0;
      try {
        const ticket = await this._ensureTicket(run);
        if (signal.aborted) return;
        this._set('connecting');
        connectedAt = Date.now();
        await this._play(ticket, run);
        this._rejoin = true;
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError && FATAL_CODES.has(err.code)) throw err;
        if (err instanceof ApiError && err.status >= 400 && err.status < 500
            && err.status !== 429 && !REJOIN_STATUSES.has(err.status)) throw err;
        if (err.status && REJOIN_STATUSES.has(err.status)) this._ticket = null;
        // The stream's node is gone, failing, or no longer holds the space (409
        // not_live): ask where to listen now, with the ticket in hand.
        if (!(err instanceof ApiError)
            && !(err instanceof StreamError && err.status < 500 && err.status !== 409)) {
          this._rejoin = true;
        }
        // A network drop keeps the MediaSource (playback resumes seamlessly);
        // anything else starts the media pipeline afresh.
        if (!(err instanceof TypeError) && !(err instanceof ApiError)) this._teardownMedia();
        waitS = err.retryAfterS || 0;
      }
      if (signal.aborted) return;
      if (this.isStillLive && !(await this.isStillLive().catch(() => true))) {
        if (run === this._run) this.stop('ended');
        return;
      }
      if (Date.now() - connectedAt >= HEALTHY_CONNECTION_MS) attempt = 0;
      const delay = Math.max(backoffMs(attempt), waitS * 1000);
      attempt += 1;
      this.reconnects += 1;
      this.retryInS = Math.ceil(delay / 1000);
      this._set('reconnecting');
      await sleep(delay, signal);
    }
  }

  /** A ticket that is still good, joining (and waiting in line) if needed. */
  async _ensureTicket(run) {
    const ticket = this._ticket;
    const rejoin = this._rejoin;
    this._rejoin = false;
    const fresh = ticket && Date.parse(ticket.expires_at) - Date.now() > TICKET_MARGIN_MS;
    if (fresh && !rejoin) return ticket;
    this._ticket = null;
    if (ticket && rejoin) {
      try {
        this._set('joining');
        this._ticket = await post(spacePath(this.spaceId, 'join'), { ticket: ticket.ticket });
        return this._ticket;
      } catch (err) {
        // A ticket this node does not honour (too old, another deployment): join anew.
        if (!(err instanceof ApiError) || err.status !== 403) throw err;
      }
    }
    let body = {};
    while (!run.controller.signal.aborted) {
      this._set(this.wait ? 'waiting' : 'joining');
      let answer;
      try {
        const plain = this.joinAnonymously && !Object.keys(body).length;
        answer = plain ? await this.joinAnonymously() : await post(spacePath(this.spaceId, 'join'), body);
      } catch (err) {
        // Under attack the server asks anonymous listeners for a proof of work
        // (~0.5 s of hashing here): solve it once and ask again.
        if (!(err instanceof ApiError) || err.code !== 'pow_required' || body.pow) throw err;
        this._set('solving');
        const { challenge, difficulty } = err.details;
        const solution = await solve(challenge, difficulty, { signal: run.controller.signal });
        body = { pow: { challenge, solution } };
        continue;
      }
      if (answer && answer.wait) {
        // The server sets the pace; never ask again sooner than it said.
        this.wait = answer.wait;
        this._set('waiting');
        body = { token: answer.wait.token };
        const retryS = Math.max(MIN_WAIT_RETRY_S, Number(answer.wait.retry_after_s) || 1);
        await sleep(retryS * 1000, run.controller.signal);
        continue;
      }
      this.wait = null;
      this._ticket = answer;
      return answer;
    }
    return null;
  }

  /** Plays until the stream ends. */
  async _play(ticket, run) {
    if (this.delivery === 'mse') return this._streamMse(ticket.live_url, run);
    if (this.delivery === 'hlsjs') {
      const rendition = chooseHlsRendition(ticket);
      this.hlsCodec = rendition.codec;
      return this._playHlsJs(rendition.url, run);
    }
    const url = this.delivery === 'hls' ? ticket.hls_url : ticket.live_url;
    return this._playElement(url, run);
  }

  async _streamMse(url, run) {
    if (this._mse && (this._mse.mediaSource.readyState !== 'open' || this.audio.error)) {
      this._teardownMedia();
    }
    const mse = this._mse || (await this._openMediaSource(run));
    if (!mse) return;
    const conn = new AbortController();
    this._conn = conn;
    run.controller.signal.addEventListener('abort', () => conn.abort(), { once: true });
    const res = await fetch(url, { signal: conn.signal, cache: 'no-store' });
    if (!res.ok) throw new StreamError(res);
    await this._resetParser(mse);
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.bytesReceived += value.byteLength;
        if (!this._enqueue(mse, value)) {
          this.overflows += 1;
          break;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  /**
   * A dropped connection can leave half an ADTS frame in the SourceBuffer's
   * parser; the next stream starts on a frame boundary, so the parser must
   * forget it. In 'sequence' mode the next frame still follows the last one.
   */
  async _resetParser(mse) {
    mse.pending.length = 0;
    mse.pendingBytes = 0;
    const { sourceBuffer } = mse;
    for (let i = 0; i < MAX_UPDATE_WAITS && sourceBuffer.updating; i++) {
      await new Promise((resolve) => sourceBuffer.addEventListener('updateend', resolve,
        { once: true }));
    }
    if (!sourceBuffer.updating && mse.mediaSource.readyState === 'open') sourceBuffer.abort();
  }

  _openMediaSource(run) {
    return new Promise((resolve, reject) => {
      const mediaSource = new MediaSource();
      const objectUrl = URL.createObjectURL(mediaSource);
      mediaSource.addEventListener('sourceopen', () => {
        if (run.controller.signal.aborted) return resolve(null);
        const sourceBuffer = mediaSource.addSourceBuffer(MSE_TYPE);
        sourceBuffer.mode = 'sequence';
        const mse = { mediaSource, sourceBuffer, objectUrl, pending: [], pendingBytes: 0,
          started: false };
        sourceBuffer.addEventListener('updateend', () => this._afterUpdate(mse));
        this._mse = mse;
        resolve(mse);
      }, { once: true });
      this.audio.addEventListener('error', () => reject(new Error(
        'This browser could not play the live audio.')), { once: true });
      this.audio.src = objectUrl;
    });
  }

  /** Queues a chunk for the SourceBuffer; false when the queue is full. */
  _enqueue(mse, chunk) {
    if (mse.pendingBytes + chunk.byteLength > MAX_PENDING_BYTES) {
      mse.pending.length = 0;
      mse.pendingBytes = 0;
      return false;
    }
    mse.pending.push(chunk);
    mse.pendingBytes += chunk.byteLength;
    this._pump(mse);
    return true;
  }

  _pump(mse) {
    const { sourceBuffer } = mse;
    if (sourceBuffer.updating || this._mse !== mse || !mse.pending.length) return;
    const data = new Uint8Array(mse.pendingBytes);
    let offset = 0;
    for (const chunk of mse.pending) {
      data.set(chunk, offset);
      offset += chunk.byteLength;
    }
    mse.pending.length = 0;
    mse.pendingBytes = 0;
    try {
      sourceBuffer.appendBuffer(data);
    } catch (err) {
      // Quota: make room and let this connection go (the reconnect starts clean).
      // Anything else: the MediaSource is broken; the stream loop notices and rebuilds it.
      if (err.name === 'QuotaExceededError') this._trim(mse, 0);
      this.overflows += 1;
      this._conn?.abort();
    }
  }

  _afterUpdate(mse) {
    if (this._mse !== mse) return;
    const { buffered } = mse.sourceBuffer;
    if (buffered.length) this._followLiveEdge(mse, buffered);
    if (!this._trim(mse, KEEP_BEHIND_S + TRIM_SLACK_S)) this._pump(mse);
  }

  /** Starts playback just behind the newest audio and keeps it there. */
  _followLiveEdge(mse, buffered) {
    const end = buffered.end(buffered.length - 1);
    const { audio } = this;
    if (!mse.started) {
      mse.started = true;
      audio.currentTime = Math.max(buffered.start(0), end - LIVE_EDGE_TARGET_S);
      audio.play().catch((err) => {
        if (this._run) this._fail(this._run, new Error(
          err.name === 'NotAllowedError' ? 'Press play to listen.' : err.message));
      });
    } else if (end - audio.currentTime > LIVE_EDGE_MAX_S) {
      audio.currentTime = end - LIVE_EDGE_TARGET_S;
      this.edgeSkips += 1;
    }
    // After a reconnect the element never stopped, so no 'playing' event comes.
    if (this._run && !audio.paused && this.state !== 'playing'
        && audio.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA) this._set('playing');
  }

  /** Removes audio older than KEEP_BEHIND_S once `slackS` beyond it has built up. */
  _trim(mse, slackS) {
    const { sourceBuffer } = mse;
    if (sourceBuffer.updating || !sourceBuffer.buffered.length) return false;
    const start = sourceBuffer.buffered.start(0);
    const cut = this.audio.currentTime - KEEP_BEHIND_S;
    if (cut - start < slackS || cut <= start) return false;
    sourceBuffer.remove(start, cut);
    return true;
  }

  /** Low-latency HLS through hls.js: blocking playlist reloads, ~200 ms parts. */
  async _playHlsJs(url, run) {
    const { default: Hls } = await import(HLS_JS);
    if (run.controller.signal.aborted) return undefined;
    return new Promise((resolve, reject) => {
      const hls = new Hls({ lowLatencyMode: true, backBufferLength: KEEP_BEHIND_S });
      this.hls = hls;
      let finished = false;
      const finish = (err) => {
        if (finished) return;
        finished = true;
        hls.destroy();
        if (this.hls === hls) this.hls = null;
        if (err) reject(err);
        else resolve();
      };
      hls.on(Hls.Events.ERROR, (_event, data) => {
        console.warn('hls.js:', data.type, data.details, data.fatal ? '(fatal)' : '', data.reason || '');
        if (data.fatal) finish(new Error(`The HLS stream failed (${data.details}).`));
      });
      hls.on(Hls.Events.FRAG_LOADED, (_event, data) => {
        this.bytesReceived += data.frag.stats?.loaded || 0;
      });
      hls.on(Hls.Events.MANIFEST_PARSED, () => {
        this.audio.play().catch((err) => {
          if (this._run) this._fail(this._run, new Error(
            err.name === 'NotAllowedError' ? 'Press play to listen.' : err.message));
        });
      });
      this.audio.addEventListener('ended', () => finish(), { once: true });
      run.controller.signal.addEventListener('abort', () => finish(), { once: true });
      hls.loadSource(url);
      hls.attachMedia(this.audio);
    });
  }

  _playElement(url, run) {
    return new Promise((resolve) => {
      const { audio } = this;
      const done = () => {
        audio.removeEventListener('error', done);
        audio.removeEventListener('ended', done);
        resolve();
      };
      audio.addEventListener('error', done);
      audio.addEventListener('ended', done);
      run.controller.signal.addEventListener('abort', done, { once: true });
      audio.src = url;
      audio.play().catch(() => {});
    });
  }

  _teardownMedia() {
    const { audio } = this;
    if (this.hls) this.hls.destroy();
    this.hls = null;
    audio.pause();
    if (this._mse) URL.revokeObjectURL(this._mse.objectUrl);
    this._mse = null;
    if (audio.hasAttribute('src')) {
      audio.removeAttribute('src');
      audio.load();
    }
  }
}
