import { RedisScript } from '@app/redis';

/**
 * The Redis side of a shared stream, keyed by its id (hash-tagged, so that one stream's keys share a slot):
 * - `meta`: a hash `owner`, `instance` (the one running the upstream), `ended` (set once, with the terminal event),
 *   `followed` (set once, when an instance first joins its listeners: until then an append publishes nothing);
 *   for a handover: `id` (the public stream id), `request` (what a continuation needs, see `StoredRequest`),
 *   `transport`, `limitKey` (whose concurrency slot it holds), `handover` (its instance offers it to another, while
 *   stopping), `cancelled` (a cancel was asked for: nobody takes it over);
 * - `events`: a Redis Stream, one entry per event, entry id `0-<seq + 1>`, field `e` = the event's JSON;
 * - `listeners`: a sorted set, member = an instance following the stream, score = until when it listens
 *   (the future while it does; the moment its last listener left, after).
 * An instance's lease is `llmgw:instance:<id>`, kept by its heartbeat; cancels reach it on `llmgw:cancel:<id>`,
 * and the events of the streams it follows on `llmgw:follow:<id>` (see `parseFollowMessage`); a stopping instance
 * offers its streams to every other on `llmgw:handover` (see `OFFER`).
 */
export function streamKeys(id: string): [meta: string, events: string, listeners: string] {
  return [`llmgw:{${id}}:meta`, `llmgw:{${id}}:events`, `llmgw:{${id}}:listeners`];
}
export const LEASE_PREFIX = 'llmgw:instance:';
export const CANCEL_CHANNEL_PREFIX = 'llmgw:cancel:';
export const FOLLOW_CHANNEL_PREFIX = 'llmgw:follow:';
export const HANDOVER_CHANNEL = 'llmgw:handover';

/**
 * What a follower is pushed when events are appended, published by the same script that appends them (so they
 * are in Redis before anyone hears of them): the events key, then each entry id and the event's JSON, one per
 * line (JSON has no raw newline). Read by `parseFollowMessage`.
 */
const PUBLISH_TO_FOLLOWERS = `
local function publishToFollowers(listeners, prefix, message)
  for _, instance in ipairs(redis.call('ZRANGE', listeners, 0, -1)) do
    redis.call('PUBLISH', prefix .. instance, message)
  end
end
`;

/** A follow message's events key and its entries as `[entry id, event JSON]`; see `PUBLISH_TO_FOLLOWERS`. */
export function parseFollowMessage(message: string): { eventsKey: string; entries: [string, string][] } {
  const lines = message.split('\n');
  const entries: [string, string][] = [];
  for (let line = 1; line + 1 < lines.length; line += 2) {
    entries.push([lines[line], lines[line + 1]]);
  }
  return { eventsKey: lines[0], entries };
}

/** Entry ids carry the seq, so that a follower reads "after seq n" as "after entry 0-(n+1)" and no event twice. */
export function entryId(seq: number): string {
  return `0-${seq + 1}`;
}

/** The number in an entry id `0-<n>`: the seq of that entry plus one. */
export function entryNumber(id: string): number {
  return Number(id.slice(id.indexOf('-') + 1));
}

/**
 * KEYS meta; ARGV owner, instance, ttl, id, request, transport, limitKey. 1: the id is ours now; 0: already in use.
 */
export const CLAIM = new RedisScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'instance', ARGV[2], 'id', ARGV[4], 'request', ARGV[5],
  'transport', ARGV[6], 'limitKey', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`);

/**
 * KEYS meta, events, listeners of each stream in turn; ARGV finishedTtl, runningTtl, maxlen, follow channel
 * prefix, the appending instance, then per stream: its state (the sum of 1: first batch, 2: ending batch, 4: sent again after a call
 * whose reply was lost), its number of events, and that many entry id and JSON pairs. A batch sent again may be
 * in Redis already, wholly or in part (the call ran, its reply did not arrive): its entries up to the stream's
 * last one are skipped, so that a retry never fails on an entry id that is not above the last (which would fail
 * every later retry too, and the stream's copy in Redis would stall). Every instance in a stream's `listeners` is pushed its batch
 * (`followed` in `meta` says whether there can be any: it is set, atomically, before a listener is added). Per
 * stream, in order: 1, appended; 0, the stream has ended already (declared lost), nothing appended, so there is
 * never a second terminal event; -1, Redis no longer knows the stream; -2, another instance has taken it over
 * (nothing appended: its events come from there now).
 */
export const APPEND = new RedisScript(`${PUBLISH_TO_FOLLOWERS}
local appended = {}
local at = 6
for k = 1, #KEYS, 3 do
  local state, count = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local first, last = at + 2, at + 1 + 2 * count
  at = last + 1
  local meta = redis.call('HMGET', KEYS[k], 'owner', 'ended', 'followed', 'instance')
  if not meta[1] then
    appended[#appended + 1] = -1
  elseif meta[2] then
    appended[#appended + 1] = 0
  elseif meta[4] ~= ARGV[5] then
    appended[#appended + 1] = -2
  else
    if state >= 4 then
      state = state - 4
      local top = redis.call('XREVRANGE', KEYS[k + 1], '+', '-', 'COUNT', 1)
      local lastThere = top[1] and tonumber(string.sub(top[1][1], 3)) or 0
      while first <= last and tonumber(string.sub(ARGV[first], 3)) <= lastThere do
        first = first + 2
      end
    end
    for i = first, last, 2 do
      redis.call('XADD', KEYS[k + 1], 'MAXLEN', '~', ARGV[3], ARGV[i], 'e', ARGV[i + 1])
    end
    if meta[3] and first <= last then
      publishToFollowers(KEYS[k + 2], ARGV[4], KEYS[k + 1] .. '\\n' .. table.concat(ARGV, '\\n', first, last))
    end
    if state >= 2 then
      redis.call('HSET', KEYS[k], 'ended', '1')
      for j = k, k + 2 do redis.call('PEXPIRE', KEYS[j], ARGV[1]) end
    elseif state == 1 then
      redis.call('PEXPIRE', KEYS[k + 1], ARGV[2])
    end
    appended[#appended + 1] = 1
  end
end
return appended
`);

/**
 * KEYS meta, events, listeners; ARGV leasePrefix, finishedTtl, streamId, message, judge ('1': may declare the
 * stream lost), follow channel prefix, takeOver ('1': the caller would take an orphan over). A stream not ended
 * whose instance's lease is gone is an orphan: when the caller would take it over and it can be (its request is
 * kept, nobody cancelled it), it is left as it is, `orphaned` '1' and its model returned (see `TAKE_OVER`);
 * otherwise it gets the one terminal event `stream_lost` here, atomically with the check, pushed to its followers
 * like any other. Returns [] when unknown, else [owner, instance, ended, firstId, lastId, orphaned, model, leaseMs]
 * (how long the running instance's lease has left: when a follower should look again if it stays quiet).
 */
export const LOOKUP = new RedisScript(`${PUBLISH_TO_FOLLOWERS}
local meta = redis.call('HMGET', KEYS[1], 'owner', 'instance', 'ended', 'request', 'cancelled')
if not meta[1] then return {} end
local ended = meta[3] and '1' or '0'
local orphaned, model = '0', ''
local lapsed = ended == '0' and ARGV[5] == '1' and redis.call('EXISTS', ARGV[1] .. meta[2]) == 0
if lapsed and ARGV[7] == '1' and meta[4] and not meta[5] then
  orphaned = '1'
  model = cjson.decode(meta[4]).model
  if type(model) ~= 'string' then model = '' end
elseif lapsed then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  local seq = 0
  if #last > 0 then seq = tonumber(string.sub(last[1][1], 3)) end
  local now = redis.call('TIME')
  local event = cjson.encode({ type = 'error', streamId = ARGV[3], seq = seq,
    ts = tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000,
    error = { code = 'stream_lost', message = ARGV[4], retryable = true } })
  redis.call('XADD', KEYS[2], '0-' .. (seq + 1), 'e', event)
  publishToFollowers(KEYS[3], ARGV[6], KEYS[2] .. '\\n0-' .. (seq + 1) .. '\\n' .. event)
  redis.call('HSET', KEYS[1], 'ended', '1')
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[2]) end
  ended = '1'
end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local leaseMs = ended == '0' and redis.call('PTTL', ARGV[1] .. meta[2]) or -2
return { meta[1], meta[2], ended, first[1] and first[1][1] or '', last[1] and last[1][1] or '', orphaned, model,
  leaseMs }
`);

/**
 * KEYS meta; ARGV instance, channel, message. A stopping instance offers its running stream to the others: when
 * it is still this instance's, running, and nobody cancelled it, the message is published to every instance in the
 * same step, and the number that heard it returned (0: nobody could take it); else 0.
 */
export const OFFER = new RedisScript(`
local meta = redis.call('HMGET', KEYS[1], 'instance', 'ended', 'cancelled')
if meta[1] ~= ARGV[1] or meta[2] or meta[3] then return 0 end
redis.call('HSET', KEYS[1], 'handover', '1')
return redis.call('PUBLISH', ARGV[2], ARGV[3])
`);

/** KEYS meta; ARGV instance. An offer nobody took is withdrawn: 1 when the stream is still this instance's. */
export const WITHDRAW = new RedisScript(`
if redis.call('HGET', KEYS[1], 'instance') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'handover')
return 1
`);

/**
 * KEYS meta, events; ARGV leasePrefix, instance, judge ('1': this instance may judge others dead). The one place a
 * stream changes hands, so that exactly one instance takes it: a running stream, not cancelled, whose request is
 * kept, that its instance offers (stopping) or whose instance's lease is gone (died), becomes this instance's.
 * Returns [] when not taken, else [owner, id, request, transport, limitKey, entries] with every entry of its
 * events as XRANGE gives them, read in the same step, so that nothing is appended between the take and the read.
 */
export const TAKE_OVER = new RedisScript(`
local meta = redis.call('HMGET', KEYS[1], 'owner', 'instance', 'ended', 'cancelled', 'request', 'handover', 'id',
  'transport', 'limitKey')
if not meta[1] or meta[3] or meta[4] or not meta[5] or meta[2] == ARGV[2] then return {} end
if not meta[6] and (ARGV[3] ~= '1' or redis.call('EXISTS', ARGV[1] .. meta[2]) == 1) then return {} end
redis.call('HSET', KEYS[1], 'instance', ARGV[2])
redis.call('HDEL', KEYS[1], 'handover')
return { meta[1], meta[7], meta[5], meta[8] or '', meta[9] or '', redis.call('XRANGE', KEYS[2], '-', '+') }
`);

/**
 * KEYS meta. A cancel is kept with the stream, so that a handover racing it never continues it (see `TAKE_OVER`).
 * Returns [] when unknown, else [instance, ended]: where to send the cancel, if anywhere.
 */
export const CANCEL = new RedisScript(`
local meta = redis.call('HMGET', KEYS[1], 'instance', 'ended')
if not meta[1] then return {} end
if not meta[2] then redis.call('HSET', KEYS[1], 'cancelled', '1') end
return { meta[1], meta[2] and '1' or '0' }
`);

/**
 * KEYS meta, listeners; ARGV member, score, ttl: an instance's presence, only while the stream runs. Marks the
 * stream `followed` first, so that every append from then on publishes (see `APPEND`).
 */
export const TOUCH_LISTENERS = new RedisScript(`
if redis.call('EXISTS', KEYS[1]) == 1 and not redis.call('HGET', KEYS[1], 'ended') then
  redis.call('HSET', KEYS[1], 'followed', '1')
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 1
`);

/** KEYS meta, events, listeners of each running stream in turn; ARGV ttl: the owner's heartbeat. */
export const KEEP_ALIVE = new RedisScript(`
for i = 1, #KEYS, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 and not redis.call('HGET', KEYS[i], 'ended') then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
    redis.call('PEXPIRE', KEYS[i + 2], ARGV[1])
  end
end
return 1
`);
