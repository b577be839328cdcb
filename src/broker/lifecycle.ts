import { setMaxListeners } from 'node:events'

/** The broker's own lifecycle, shared by its modules: whether it is closing, the shutdown signal, background work. */
export interface Lifecycle {
  readonly closing: boolean
  /** Aborted when provider calls must stop (drain's grace period is over, or close). */
  readonly signal: AbortSignal
  /** Remembers background work so close() can wait for it; its failures are the work's own to report. */
  track: (promise: Promise<unknown>) => void
  /** Shutdown has begun: provider calls are aborted after `graceMs`. */
  abortAfter: (graceMs: number) => void
  /** Marks closing and aborts provider calls at once. */
  close: () => void
  /** Settles once every tracked task has (and `extra`), or after `timeoutMs`. */
  settled: (extra: Array<Promise<unknown> | undefined>, timeoutMs: number) => Promise<void>
}

export function createLifecycle (expectedConcurrentMints: number): Lifecycle {
  const shutdown = new AbortController()
  // Every mint in flight listens for shutdown, and mints are single-flighted per grant key: up to one per
  // key at a time is expected, not a leak, and must not print a warning at a cold start. More would be.
  setMaxListeners(Math.max(10, expectedConcurrentMints + 10), shutdown.signal)
  const background = new Set<Promise<unknown>>()
  let closing = false
  return {
    get closing () { return closing },
    signal: shutdown.signal,
    track (promise) {
      background.add(promise)
      void promise.catch(() => {}).finally(() => background.delete(promise))
    },
    abortAfter (graceMs) {
      setTimeout(() => { shutdown.abort() }, graceMs).unref()
    },
    close () {
      closing = true
      shutdown.abort()
    },
    async settled (extra, timeoutMs) {
      await Promise.race([
        Promise.allSettled([...background, ...extra]),
        new Promise(resolve => setTimeout(resolve, timeoutMs).unref())
      ])
    }
  }
}
