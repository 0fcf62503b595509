// The microphone on stage: one WebRTC peer connection to the server, which
// mixes every speaker and sends each one back the mix-minus (everyone but
// themselves). The browser's echo cancellation, noise suppression and gain
// control are on: speakers are mostly on laptops and phones without headsets.

import { post, spacePath } from './api.js';
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
 * connected, failed; the 'change' event reports it, with `error` on failure.
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
    } catch (err) {
      this._release();
      this.error = micErrorMessage(err);
      this._set('failed');
      throw new Error(this.error);
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
    this._release();
    this.error = CONNECT_TIMEOUT_MESSAGE;
    this._set('failed');
  }

  _onConnectionState(pc) {
    if (this.pc !== pc) return;
    if (pc.connectionState === 'connected') {
      clearTimeout(this.connectTimer);
      this._set('connected');
    }
    else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
      this._release();
      this.error = 'The connection to the stage was lost.';
      this._set('failed');
    }
  }

  _release() {
    clearTimeout(this.connectTimer);
    if (this.pc) this.pc.close();
    this.pc = null;
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
