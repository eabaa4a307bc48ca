/** `GET /api/info`: what the client needs to know about the server it talks to. */
export interface ServerInfo {
  provider: string;
  defaultModel: string;
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

export interface ServerTime {
  ts: number;
}
