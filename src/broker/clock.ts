/** Opaque handle of a timer set through a Clock. */
export type TimerHandle = unknown

/**
 * Time as the token lifecycle sees it. Grant lifetimes and refresh schedules run on this clock, so tests
 * can cover 8 h and 30 min lifetimes by moving it instead of waiting. Short network-bound waits (lease
 * waits, timeouts) use real time: they are about elapsed wall time, not about a grant's life.
 */
export interface Clock {
  now: () => number
  setTimer: (callback: () => void, delayMs: number) => TimerHandle
  clearTimer: (handle: TimerHandle) => void
}

/** Node's setTimeout overflows above 2^31-1 ms (~24.8 days) and fires at once; longer timers re-arm. */
const maxTimerMs = 2 ** 31 - 1

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer: (callback, delayMs) => {
    const timer = setTimeout(callback, Math.min(Math.max(0, delayMs), maxTimerMs))
    timer.unref()
    return timer
  },
  clearTimer: handle => { clearTimeout(handle as NodeJS.Timeout) }
}
