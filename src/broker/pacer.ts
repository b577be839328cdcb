/**
 * Spreads proactive refreshes over time. Each grant has a planned refresh time and an earliest one (the
 * engine's lower clamp, 50 % of its lifetime); refreshing anywhere in between is safe, refreshing later
 * is not. The pacer books every refresh into the latest whole second at or before its planned time that
 * still has room, never earlier than its earliest time; only when every second of that window is full
 * does it keep the planned time (a refresh is never delayed to smooth the load).
 *
 * Why: replicas that start together mint every credential within seconds, and each lifetime's grants then
 * come due together again, cycle after cycle (jitter widens a wave to ±5 % of the lifetime, no more). A
 * provider sees those waves as bursts; the pacer levels them into a steady rate a little above the
 * long-run average, pulling a wave's refreshes forward into the quiet seconds before it.
 *
 * The room per second is `headroom` × the long-run rate of all grants booked so far (Σ 1 / refresh
 * interval), at least one. Every replica holds every grant, so each one computes the cluster's rate.
 */
export interface RefreshPacer {
  /**
   * Books the refresh of `id` and returns when to run it (epoch ms): `plannedAt`, or an earlier moment no
   * earlier than `earliestAt` or `now`. Replaces the previous booking of `id`.
   */
  book: (id: string, booking: { now: number, earliestAt: number, plannedAt: number, intervalMs: number }) => number
  /** Forgets the booking of `id` (it ran, or is scheduled for another reason). */
  release: (id: string) => void
  /** Refreshes allowed per second right now. */
  perSecond: () => number
}

export interface PacerOptions {
  /** Room per second as a multiple of the long-run refresh rate; default 1.5. */
  headroom?: number
}

export function createRefreshPacer (options: PacerOptions = {}): RefreshPacer {
  const headroom = options.headroom ?? 1.5
  /** Bookings per whole second (epoch seconds). Only seconds with bookings are kept. */
  const booked = new Map<number, number>()
  const bookingOf = new Map<string, number>()
  const rateOf = new Map<string, number>()
  let rate = 0

  const perSecond = (): number => Math.max(1, Math.ceil(headroom * rate))

  function release (id: string): void {
    const second = bookingOf.get(id)
    if (second === undefined) return
    bookingOf.delete(id)
    const count = (booked.get(second) ?? 1) - 1
    if (count <= 0) booked.delete(second)
    else booked.set(second, count)
  }

  function take (id: string, second: number): void {
    bookingOf.set(id, second)
    booked.set(second, (booked.get(second) ?? 0) + 1)
  }

  return {
    book (id, { now, earliestAt, plannedAt, intervalMs }) {
      release(id)
      const previousRate = rateOf.get(id) ?? 0
      const idRate = intervalMs > 0 ? 1000 / intervalMs : 0
      rateOf.set(id, idRate)
      rate += idRate - previousRate
      // Already due: run now, and count it against this second.
      if (plannedAt <= now) {
        take(id, Math.floor(now / 1000))
        return plannedAt
      }
      const room = perSecond()
      const plannedSecond = Math.floor(plannedAt / 1000)
      // The earliest whole second that lies entirely in the allowed window (and is not in the past).
      const lowest = Math.ceil(Math.max(earliestAt, now) / 1000)
      for (let second = plannedSecond; second >= lowest; second--) {
        if ((booked.get(second) ?? 0) >= room) continue
        take(id, second)
        // The same offset into the chosen second as into the planned one: refreshes booked into one
        // second do not all start at its first millisecond.
        return second === plannedSecond ? plannedAt : second * 1000 + (plannedAt - plannedSecond * 1000)
      }
      take(id, plannedSecond)
      return plannedAt
    },
    release,
    perSecond
  }
}
