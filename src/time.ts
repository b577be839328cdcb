/**
 * Time, in one place: the injectable clock and timers, bounded waits, and the one backoff formula.
 */

/** Opaque handle of a timer set through `Timers`. */
export type TimerHandle = unknown

/** Timer functions, injectable so tests can drive renewals and refreshes without waiting. */
export interface Timers {
  setTimer: (callback: () => void, delayMs: number) => TimerHandle
  clearTimer: (handle: TimerHandle) => void
}

/**
 * Time as the token lifecycle sees it. Grant lifetimes and refresh schedules run on this clock, so tests
 * can cover 8 h and 30 min lifetimes by moving it instead of waiting. Short network-bound waits (lease
 * waits, timeouts) use real time: they are about elapsed wall time, not about a grant's life.
 */
export interface Clock extends Timers {
  now: () => number
}

/** Node's setTimeout overflows above 2^31-1 ms (~24.8 days) and fires at once; longer timers are clamped and re-armed by their owner. */
const maxTimerMs = 2 ** 31 - 1

/** Real timers, unref'd: a pending refresh or renewal must never keep the process alive. */
export const systemTimers: Timers = {
  setTimer: (callback, delayMs) => {
    const timer = setTimeout(callback, Math.min(Math.max(0, delayMs), maxTimerMs))
    timer.unref()
    return timer
  },
  clearTimer: handle => { clearTimeout(handle as NodeJS.Timeout) }
}

export const systemClock: Clock = { now: () => Date.now(), ...systemTimers }

/**
 * Settles like `promise`, or rejects with `onTimeout()` after `ms` (real time). The timer is cleared
 * either way, so a bounded wait leaves nothing armed behind it.
 */
export async function withTimeout<T> (promise: Promise<T>, ms: number, onTimeout: () => Error = () => new Error('timed out')): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(onTimeout()) }, Math.max(0, ms))
    timer.unref()
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Resolves after `ms` (real time), or at once when `signal` aborts. Never keeps the process alive. */
export async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true) return
  await new Promise<void>(resolve => {
    const done = (): void => { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, Math.max(0, ms))
    timer.unref()
    signal?.addEventListener('abort', done, { once: true })
  })
}

export interface BackoffPolicy {
  /** Delay before the first retry (before jitter). */
  baseMs: number
  /** Longest delay (before jitter). */
  capMs: number
  /**
   * Share of the delay that is random: the delay lies in [(1 − jitterRatio) × d, d]. 0.5 is "equal
   * jitter" (half fixed, half random): processes that failed together do not retry together, yet none
   * retries at once.
   */
  jitterRatio?: number
}

/** Provider retries: 1 s doubling to 5 min, equal jitter. */
export const defaultBackoff: BackoffPolicy = { baseMs: 1000, capMs: 5 * 60_000, jitterRatio: 0.5 }

/**
 * Delay before retry number `attempt` (1-based): d = min(capMs, baseMs × 2^(attempt − 1)), of which the
 * share jitterRatio (default 0.5) is random. A provider's Retry-After is a floor: retrying sooner only
 * earns another 429. The one backoff formula: provider retries, Vault re-logins and Redis reconnects.
 */
export function backoffDelayMs (attempt: number, retryAfterMs: number | undefined, policy: BackoffPolicy = defaultBackoff, random: () => number = Math.random): number {
  const exponential = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt - 1))
  const jitterRatio = policy.jitterRatio ?? 0.5
  const jittered = exponential * (1 - jitterRatio + jitterRatio * random())
  return Math.max(jittered, retryAfterMs ?? 0)
}
