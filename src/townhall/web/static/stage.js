// The microphone on stage: one WebRTC peer connection to the server, which
// mixes every speaker and sends each one back the mix-minus (everyone but
// themselves). The browser's echo cancellation, noise suppression and gain
// control are on: speakers are mostly on laptops and phones without headsets.
// A connection lost once it was up (the stage's node died, and another took the
// space over) is offered again, with back-off and jitter, through whichever node
// answers the page: the offer reaches the new stage's node by itself.

import { ApiError, post, spacePath } from './api.js';
import { micConstraints } from './mictest.js';
/** The server answers once it has our candidates; waiting longer than this gains little. */
const ICE_GATHERING_TIMEOUT_MS = 2_000;
/**
 * A connection that is not up by then never will be: the server offered no address this
 * browser can reach (the server gives up at the same time, see StageSettings).
 */
export const CONNECT_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MESSAGE = 'Could not connect your microphone to the stage within '
  + `${CONNECT_TIMEOUT_MS / 1000} s. Check that no VPN or firewall blocks it and try again; if it `
  + 'keeps failing, the server must offer an address your browser can reach '
  + '(TOWNHALL_STAGE_ICE_HOST_ADDRESSES, see the README).';

/** A connection 'disconnected' this long is taken for lost (it may come back by itself). */
const DISCONNECTED_GRACE_MS = 2_000;
const RECONNECT_BASE_MS = 500;
const RECONNECT_MAX_MS = 10_000;
/** Refusals after which offering again cannot help: off the stage, removed, ended. */
const FINAL_STATUSES = new Set([401, 403, 404]);

function reconnectDelayMs(attempt) {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(finish, timeoutMs);
    function finish() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === 'complete') finish();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function micErrorMessage(err) {
  if (err.name === 'NotAllowedError') return 'Microphone access was refused. Allow it in the browser to speak.';
  if (err.name === 'NotFoundError') return 'No microphone was found.';
  return err.message || String(err);
}

/**
 * A speaker's connection to the stage. `state` is off, starting, connecting,
 * connected, reconnecting, failed; the 'change' event reports it, with `error` on
 * failure. `reconnects` counts the connections offered again after a loss.
 */
export class StageMic extends EventTarget {
  /** @param {HTMLAudioElement} remoteAudio plays the mix-minus */
  constructor(spaceId, remoteAudio) {
    super();
    this.spaceId = spaceId;
    this.remoteAudio = remoteAudio;
    this.state = 'off';
    this.error = null;
    this.muted = false;
    this.pc = null;
    this.stream = null;
    this.connectTimer = null;
    this.lostTimer = null;
    this.reconnects = 0;
    this._attempt = 0;
    this._wasConnected = false;
    this._reconnecting = false;
    /** The microphone to use ('' for the browser's default). */
    this.deviceId = '';
  }

  get active() {
    return this.state !== 'off' && this.state !== 'failed';
  }

  async start() {
    if (this.active) return;
    this.error = null;
    this._set('starting');
    try {
      this.stream = await navigator.mediaDevices.getUserMedia(micConstraints(this.deviceId));
      this._applyMute();
      await this._connect();
    } catch (err) {
      this._release();
      this.error = micErrorMessage(err);
      this._set('failed');
      throw new Error(this.error);
    }
  }

  /** One peer connection for the microphone's stream, offered to the stage. */
  async _connect() {
    const pc = new RTCPeerConnection();
    this.pc = pc;
    for (const track of this.stream.getAudioTracks()) pc.addTrack(track, this.stream);
    pc.addEventListener('track', (event) => {
      this.remoteAudio.srcObject = event.streams[0] || new MediaStream([event.track]);
      this.remoteAudio.play().catch(() => {});
    });
    pc.addEventListener('connectionstatechange', () => this._onConnectionState(pc));
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc, ICE_GATHERING_TIMEOUT_MS);
    if (this.pc !== pc) return;
    this._set('connecting');
    this.connectTimer = setTimeout(() => this._giveUp(pc), CONNECT_TIMEOUT_MS);
    const answer = await post(spacePath(this.spaceId, 'stage', 'offer'),
      { type: 'offer', sdp: pc.localDescription.sdp });
    if (this.pc !== pc) return;
    await pc.setRemoteDescription(answer);
  }

  /** The stage's connection was lost: offer again (a new peer connection, the same
   * microphone) until it is up, refused for good, or the speaker stops. */
  async _reconnect() {
    if (this.stream === null || this._reconnecting) return;
    this._reconnecting = true;
    try {
      await this._offerAgain();
    } finally {
      this._reconnecting = false;
    }
  }

  async _offerAgain() {
    this._closePeer();
    this._set('reconnecting');
    while (this.stream !== null && this.state === 'reconnecting') {
      const delay = reconnectDelayMs(this._attempt);
      this._attempt += 1;
      await new Promise((resolve) => { setTimeout(resolve, delay); });
      if (this.stream === null || this.state !== 'reconnecting') return;
      this.reconnects += 1;
      try {
        await this._connect();
        return;
      } catch (err) {
        this._closePeer();
        if (err instanceof ApiError && FINAL_STATUSES.has(err.status)) {
          this._release();
          this.error = micErrorMessage(err);
          this._set('failed');
          return;
        }
        this._set('reconnecting');
      }
    }
  }

  /** Silences (or un-silences) the microphone locally; the page tells the server. */
  setMuted(muted) {
    this.muted = muted;
    this._applyMute();
  }

  stop() {
    this._release();
    this._set('off');
  }

  _applyMute() {
    for (const track of this.stream?.getAudioTracks() || []) track.enabled = !this.muted;
  }

  _giveUp(pc) {
    if (this.pc !== pc || pc.connectionState === 'connected') return;
    if (this._wasConnected) {
      this._reconnect();
      return;
    }
    this._release();
    this.error = CONNECT_TIMEOUT_MESSAGE;
    this._set('failed');
  }

  _onConnectionState(pc) {
    if (this.pc !== pc) return;
    clearTimeout(this.lostTimer);
    if (pc.connectionState === 'connected') {
      clearTimeout(this.connectTimer);
      this._attempt = 0;
      this._wasConnected = true;
      this._set('connected');
    }
    else if (this._wasConnected && pc.connectionState === 'disconnected') {
      this.lostTimer = setTimeout(() => {
        if (this.pc === pc && pc.connectionState !== 'connected') this._reconnect();
      }, DISCONNECTED_GRACE_MS);
    }
    else if (this._wasConnected && pc.connectionState === 'failed') {
      this._reconnect();
    }
    else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
      this._release();
      this.error = 'The connection to the stage was lost.';
      this._set('failed');
    }
  }

  _closePeer() {
    clearTimeout(this.connectTimer);
    clearTimeout(this.lostTimer);
    const pc = this.pc;
    this.pc = null;
    if (pc) pc.close();
  }

  _release() {
    this._closePeer();
    this._wasConnected = false;
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.stream = null;
    this.remoteAudio.pause();
    this.remoteAudio.srcObject = null;
  }

  _set(state) {
    this.state = state;
    this.dispatchEvent(new Event('change'));
  }
}
