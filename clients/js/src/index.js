// Converge JavaScript SDK. See README.md.
export { ConvergeClient, State, messageId, randomId } from './client.js';
export { Api, ApiError } from './http.js';
export { Backoff } from './backoff.js';
export { SeqTracker } from './dedupe.js';
export { Emitter } from './emitter.js';
export { AUDIO_KIND, MAX_AUDIO_PAYLOAD, decodeAudioFrame, encodeAudioFrame, encodeRelayedFrame, roomIdOf } from './rooms.js';
