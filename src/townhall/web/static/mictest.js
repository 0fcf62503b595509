// A microphone test before going live: the chosen device's level on a meter,
// nothing sent anywhere. Hosts find a muted headset or the wrong input here,
// not in front of their audience.

/** The level meter moves at most this often (and only while the tab is visible). */
const METER_INTERVAL_MS = 50;

/** Audio inputs, labelled once the page may use the microphone. */
export async function listMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === 'audioinput')
    .map((d, i) => ({ id: d.deviceId, label: d.label || `Microphone ${i + 1}` }));
}

/** getUserMedia constraints for a device ('' is the default one). */
export function micConstraints(deviceId = '') {
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (deviceId) audio.deviceId = { exact: deviceId };
  return { audio, video: false };
}

export class MicTest {
  /** @param {HTMLElement} meter a .meter with role=meter; `onLevel(0..1)` is optional */
  constructor(meter) {
    this.meter = meter;
    this.stream = null;
    this.ctx = null;
    this.timer = null;
    this.peak = 0;
  }

  get running() {
    return this.stream !== null;
  }

  async start(deviceId = '') {
    this.stop();
    this.stream = await navigator.mediaDevices.getUserMedia(micConstraints(deviceId));
    this.ctx = new AudioContext();
    const analyser = this.ctx.createAnalyser();
    analyser.fftSize = 1024;
    this.ctx.createMediaStreamSource(this.stream).connect(analyser);
    await this.ctx.resume();
    const data = new Float32Array(analyser.fftSize);
    this.meter.hidden = false;
    this.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const x of data) sum += x * x;
      const rms = Math.sqrt(sum / data.length);
      // -60 dBFS .. 0 dBFS onto 0..1: speech sits in the upper half.
      const level = Math.max(0, Math.min(1, (20 * Math.log10(rms || 1e-9) + 60) / 60));
      this.peak = Math.max(this.peak, level);
      this.meter.style.setProperty('--level', level.toFixed(3));
      this.meter.setAttribute('aria-valuenow', String(Math.round(level * 100)));
    }, METER_INTERVAL_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.stream = null;
    if (this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
    this.meter.style.setProperty('--level', '0');
    this.meter.setAttribute('aria-valuenow', '0');
  }
}
