// Which HLS rendition hls.js loads: the Opus one where this browser's MSE takes
// Opus in fMP4 (Chromium, Firefox, recent Safari), else the AAC one every player
// takes. Same program, same LL-HLS parts; Opus needs about two thirds of the bytes
// for the same speech quality (bench/codec_quality.py).

/** The Opus rendition's type, as MediaSource.isTypeSupported is asked. */
export const OPUS_MSE_TYPE = 'audio/mp4; codecs="opus"';

/** The playlist to load from a join answer, and which rendition it is. */
export function chooseHlsRendition(ticket) {
  const mse = window.MediaSource || window.ManagedMediaSource;
  if (ticket.hls_opus_url && mse && mse.isTypeSupported(OPUS_MSE_TYPE)) {
    return { url: ticket.hls_opus_url, codec: 'opus' };
  }
  return { url: ticket.hls_url, codec: 'aac' };
}
