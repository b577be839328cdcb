import type { Cluster, Redis } from 'ioredis'

/** One request counted: the caller's count in the current window (this request included) and the time left in it. */
export interface Counted { current: number, ttlMs: number }

/**
 * Counts requests per key in fixed windows aligned on the clock. `count` answers without a promise
 * whenever it can (every request but a caller's first of a window on a shared store), so the token route's
 * cache hit stays one synchronous pass.
 */
export interface CountStore {
  count: (key: string) => Counted | Promise<Counted>
  /**
   * Counts the request only if that can be done now and keeps the key within `max`; otherwise counts
   * nothing and answers undefined (the caller then takes the ordinary path, which calls `count`).
   */
  countWithin: (key: string, max: number) => Counted | undefined
  close: () => Promise<void>
}

export interface SharedCountStoreOptions {
  /** One node, a Sentinel master or a Cluster (src/store/redis-client.ts). */
  redis: Redis | Cluster
  /** Key prefix, e.g. "<REDIS_KEY_PREFIX>:ratelimit:". */
  namespace: string
  /** The counting window (the limit is per window). */
  windowMs: number
  /** How often local counts are added to the shared ones. */
  flushIntervalMs: number
  now?: () => number
}

interface Counter {
  readonly window: number
  /** The shared count last read from Redis (every replica's requests, ours included). */
  shared: number
  /** Our requests not yet sent to Redis. */
  pending: number
  /** Our requests being sent to Redis right now. */
  sending: number
  /** The first request of the window on this replica reads the shared count; the others wait for it. */
  joining: Promise<void> | undefined
}

/**
 * A rate-limit store that counts across replicas in Redis without a Redis round trip per request (the
 * design keeps the hot token path free of Redis; a round trip per request cost about a third of the
 * throughput). Windows are fixed and aligned on the clock, so all replicas count into the same key,
 * `<namespace><caller>:<window>`. The first request of a caller in a window adds itself to the shared
 * count and reads it: one round trip per caller per window per replica. Later requests count locally,
 * and every `flushIntervalMs` the local counts are added to Redis in one pipeline, which also reads the
 * other replicas' counts back (off the request path).
 *
 * The price is a bounded overshoot: other replicas' requests are seen up to one flush late, so a caller
 * may exceed the limit by about (replicas × its request rate × flushIntervalMs); a fixed window also
 * allows up to twice the limit across a window boundary. For a limit meant to stop a runaway client,
 * that is immaterial. When Redis is unreachable, each replica goes on counting what it knows, so an
 * outage neither fails requests nor lifts the limit.
 */
export function createSharedCountStore ({ redis, namespace, windowMs, flushIntervalMs, now = Date.now }: SharedCountStoreOptions): CountStore {
  const counters = new Map<string, Counter>()
  let flushing: Promise<void> | undefined
  let closed = false

  const redisKey = (key: string, window: number): string => `${namespace}${key}:${window}`
  // Kept a little past their window, for clock skew between replicas.
  const keyTtlMs = 2 * windowMs
  const total = (counter: Counter): number => counter.shared + counter.sending + counter.pending

  /**
   * INCRBY + PEXPIRE for each (key, window, amount); the new shared totals, or undefined where Redis failed.
   * One pipeline on one node. A Cluster pipeline must stay on one node, and the counters of different
   * callers live in different slots (on different masters), so there each counter gets a pipeline of its
   * own; they are sent at once, each on the connection of its slot's master.
   */
  async function add (entries: Array<{ key: string, window: number, amount: number }>): Promise<Array<number | undefined>> {
    // Not connected: count locally at once (a Cluster client would queue the commands instead of failing them).
    if (redis.status !== 'ready') return entries.map(() => undefined)
    const batches = redis.isCluster ? entries.map(entry => [entry]) : [entries]
    const totals = await Promise.all(batches.map(async batch => {
      const pipeline = redis.pipeline()
      for (const { key, window, amount } of batch) pipeline.incrby(redisKey(key, window), amount).pexpire(redisKey(key, window), keyTtlMs)
      const results = await pipeline.exec().catch(() => null)
      return batch.map((_entry, index) => {
        const [error, value] = results?.[index * 2] ?? [null, undefined]
        return error === null && typeof value === 'number' ? value : undefined
      })
    }))
    return totals.flat()
  }

  async function flush (): Promise<void> {
    const current = Math.floor(now() / windowMs)
    for (const [key, counter] of counters) {
      if (counter.window < current && counter.pending === 0 && counter.sending === 0 && counter.joining === undefined) counters.delete(key)
    }
    // Counts of the current window are read back even without requests of ours to add (INCRBY 0), so a
    // replica that was idle does not answer its next request from a count that is minutes old.
    const batch = [...counters.entries()].filter(([, counter]) => counter.joining === undefined && (counter.pending > 0 || counter.window === current))
    if (batch.length === 0) return
    for (const [, counter] of batch) {
      counter.sending = counter.pending
      counter.pending = 0
    }
    const totals = await add(batch.map(([key, counter]) => ({ key, window: counter.window, amount: counter.sending })))
    batch.forEach(([, counter], index) => {
      const shared = totals[index]
      // Sent or not, our own requests stay counted here.
      counter.shared = shared === undefined ? counter.shared + counter.sending : Math.max(shared, counter.shared + counter.sending)
      counter.sending = 0
    })
  }

  const timer = setInterval(() => {
    if (flushing !== undefined) return
    flushing = flush().finally(() => { flushing = undefined })
  }, flushIntervalMs)
  timer.unref()

  async function join (key: string, counter: Counter): Promise<void> {
    const [shared] = await add([{ key, window: counter.window, amount: 1 }])
    counter.shared = shared === undefined ? counter.shared + 1 : Math.max(shared, counter.shared + 1)
  }

  const counted = (counter: Counter): Counted => ({ current: total(counter), ttlMs: Math.max(1, (counter.window + 1) * windowMs - now()) })
  const countOne = (counter: Counter): Counted => {
    counter.pending += 1
    return counted(counter)
  }

  function count (key: string): Counted | Promise<Counted> {
    const window = Math.floor(now() / windowMs)
    const counter = counters.get(key)
    if (counter === undefined || counter.window < window) {
      const fresh: Counter = { window, shared: 0, pending: 0, sending: 0, joining: undefined }
      counters.set(key, fresh)
      fresh.joining = join(key, fresh).finally(() => { fresh.joining = undefined })
      return fresh.joining.then(() => counted(fresh))
    }
    if (counter.joining === undefined) return countOne(counter)
    return counter.joining.then(() => countOne(counter))
  }

  function countWithin (key: string, max: number): Counted | undefined {
    const counter = counters.get(key)
    if (counter === undefined || counter.joining !== undefined || counter.window !== Math.floor(now() / windowMs) || total(counter) >= max) return undefined
    return countOne(counter)
  }

  return {
    count,
    countWithin,
    close: async () => {
      if (closed) return
      closed = true
      clearInterval(timer)
      await flushing
      await flush()
    }
  }
}

/**
 * The same fixed, clock-aligned windows counted in this process only: the store without Redis (each
 * replica counts on its own). Never a promise.
 */
export function createLocalCountStore ({ windowMs, now = Date.now }: { windowMs: number, now?: () => number }): CountStore {
  const counters = new Map<string, { window: number, current: number }>()
  function counterOf (key: string, window: number): { window: number, current: number } {
    let counter = counters.get(key)
    if (counter === undefined || counter.window !== window) {
      counter = { window, current: 0 }
      counters.set(key, counter)
    }
    return counter
  }
  const counted = (counter: { window: number, current: number }): Counted => ({ current: counter.current, ttlMs: Math.max(1, (counter.window + 1) * windowMs - now()) })
  return {
    count (key) {
      const counter = counterOf(key, Math.floor(now() / windowMs))
      counter.current += 1
      return counted(counter)
    },
    countWithin (key, max) {
      const counter = counterOf(key, Math.floor(now() / windowMs))
      if (counter.current >= max) return undefined
      counter.current += 1
      return counted(counter)
    },
    close: async () => { counters.clear() }
  }
}
