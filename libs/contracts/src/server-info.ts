/** `GET /api/info`: what the client needs to know about the server it talks to. */
export interface ServerInfo {
  provider: string;
  defaultModel: string;
  /** (v1.2) With an upstream table: the public model names clients may ask for (the table's `models`). */
  models?: string[];
  /** Present when the built-in simulator is the model: its latency profiles, selectable per request as models. */
  simulator?: { profiles: SimulatorProfileInfo[] };
  limits: {
    maxBodyBytes: number;
    maxMessages: number;
    maxContentLength: number;
    maxTokensCap: number;
  };
}

export interface SimulatorProfileInfo {
  /** The model name that selects the profile. */
  model: string;
  ttftMs: number;
  tokensPerSecond: number;
  jitter: number;
}

/**
 * `GET /api/time` and the Socket.IO `clock:probe` ack: the server's wall clock, epoch ms. `receivedAt` and
 * `sentAt` are NTP's second and third timestamps (the probe's arrival and the answer's departure), which let
 * the client take the server's own time out of the round trip; `ts` equals `sentAt`.
 */
export interface ServerTime {
  ts: number;
  receivedAt: number;
  sentAt: number;
}
