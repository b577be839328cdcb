import type { Clock, TimerHandle } from '../../src/time.js'

interface FakeTimer { id: number, at: number, callback: () => void }

/**
 * A clock for grant lifetimes that moves only when told. `advance` fires due timers in time order,
 * setting `now` to each timer's moment first, as the real clock would have been when it fired.
 */
export class FakeClock implements Clock {
  private current: number
  private timers: FakeTimer[] = []
  private nextId = 1

  constructor (start = Date.UTC(2026, 10, 23, 8, 0, 0)) {
    this.current = start
  }

  readonly now = (): number => this.current

  readonly setTimer = (callback: () => void, delayMs: number): TimerHandle => {
    const timer = { id: this.nextId++, at: this.current + Math.max(0, delayMs), callback }
    this.timers.push(timer)
    return timer.id
  }

  readonly clearTimer = (handle: TimerHandle): void => {
    this.timers = this.timers.filter(timer => timer.id !== handle)
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance (ms: number): void {
    this.advanceTo(this.current + ms)
  }

  advanceTo (target: number): void {
    for (;;) {
      const due = this.timers.filter(timer => timer.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0]
      if (due === undefined) break
      this.timers = this.timers.filter(timer => timer !== due)
      this.current = Math.max(this.current, due.at)
      due.callback()
    }
    this.current = Math.max(this.current, target)
  }

  /** The earliest pending timer, if any. */
  nextTimerAt (): number | undefined {
    return this.timers.reduce<number | undefined>((min, timer) => min === undefined || timer.at < min ? timer.at : min, undefined)
  }
}
