/**
 * Spreads proactive refreshes over time. Each grant has a planned refresh time and an earliest one (40 %
 * of its lifetime, see earliestRefreshAt); refreshing anywhere in between is safe, refreshing later is
 * not. The pacer books each refresh into the least-booked whole second of that window (the latest of them
 * when several tie, so a refresh moves no earlier than it has to), looking back at most `maxAdvanceMs`
 * from the planned time. A refresh is never moved later.
 *
 * Why: replicas that start together mint every credential within seconds, and each lifetime's grants then
 * come due together again, cycle after cycle (jitter widens a wave to ±5 % of the lifetime, no more), and
 * the waves of different lifetimes pile up where they meet. A provider sees those waves as bursts. Filling
 * the emptiest second first levels them into a rate close to the long-run average.
 *
 * Why the least-booked second and not simply the latest second below some cap: bookings arrive in the
 * order grants are minted, not in the order they fall due. Grants booked early (long lifetimes, booked
 * hours ahead) would take every late second of a busy stretch, leaving the grants booked after them
 * nowhere to go but over the cap. Filling the emptiest second spreads the early ones out instead.
 *
 * Only the replica that mints a grant books its refresh with `book`; the moment travels with the grant
 * (Grant.refreshAt) and every other replica records it with `bookAt`. So all replicas agree on when each
 * grant is refreshed, and each one's counts reflect the cluster's schedule.
 */
export interface RefreshPacer {
  /**
   * Books the refresh of `id` and returns when to run it (epoch ms): `plannedAt`, or an earlier moment no
   * earlier than `earliestAt` or `now`. Replaces the previous booking of `id`.
   */
  book: (id: string, booking: { now: number, earliestAt: number, plannedAt: number }) => number
  /** Books the refresh of `id` at `at`, as another replica chose it. Replaces the previous booking of `id`. */
  bookAt: (id: string, at: number) => void
  /** Forgets the booking of `id` (it ran, or is scheduled for another reason). */
  release: (id: string) => void
}

export interface PacerOptions {
  /** How much earlier than planned a refresh may be moved, at most; default 30 min. Bounds lost token life and the cost of a booking. */
  maxAdvanceMs?: number
}

/** Seconds per bucket of booking counts: a scan over a window is a loop over a few typed arrays. */
const bucketSeconds = 1024

export function createRefreshPacer (options: PacerOptions = {}): RefreshPacer {
  const maxAdvanceSeconds = Math.floor((options.maxAdvanceMs ?? 30 * 60_000) / 1000)
  /** Bookings per whole epoch second, in buckets of 1024 seconds; a bucket goes once it is empty. */
  const buckets = new Map<number, { counts: Int32Array, total: number }>()
  const bookingOf = new Map<string, number>()

  function adjust (second: number, by: number): void {
    const index = Math.floor(second / bucketSeconds)
    let bucket = buckets.get(index)
    if (bucket === undefined) {
      bucket = { counts: new Int32Array(bucketSeconds), total: 0 }
      buckets.set(index, bucket)
    }
    const offset = second - index * bucketSeconds
    bucket.counts[offset] = (bucket.counts[offset] as number) + by
    bucket.total += by
    if (bucket.total === 0) buckets.delete(index)
  }

  function release (id: string): void {
    const second = bookingOf.get(id)
    if (second === undefined) return
    bookingOf.delete(id)
    adjust(second, -1)
  }

  function take (id: string, second: number): void {
    bookingOf.set(id, second)
    adjust(second, 1)
  }

  /** The latest least-booked second in [lowest, highest]: stops early at an empty one. */
  function leastBooked (highest: number, lowest: number): number {
    let chosen = highest
    let least = Number.POSITIVE_INFINITY
    let second = highest
    while (second >= lowest) {
      const index = Math.floor(second / bucketSeconds)
      const base = index * bucketSeconds
      const counts = buckets.get(index)?.counts
      // An absent bucket is all empty: its latest second in range is the answer.
      if (counts === undefined) return second
      for (const stop = Math.max(lowest, base); second >= stop; second--) {
        const load = counts[second - base] as number
        if (load < least) {
          chosen = second
          least = load
          if (load === 0) return chosen
        }
      }
    }
    return chosen
  }

  return {
    book (id, { now, earliestAt, plannedAt }) {
      release(id)
      // Already due: run now, and count it against this second.
      if (plannedAt <= now) {
        take(id, Math.floor(now / 1000))
        return plannedAt
      }
      const plannedSecond = Math.floor(plannedAt / 1000)
      // The earliest whole second that lies entirely in the allowed window (and is not in the past).
      const lowest = Math.max(Math.ceil(Math.max(earliestAt, now) / 1000), plannedSecond - maxAdvanceSeconds)
      const chosen = leastBooked(plannedSecond, Math.min(lowest, plannedSecond))
      take(id, chosen)
      // The same offset into the chosen second as into the planned one: refreshes booked into one second
      // do not all start at its first millisecond.
      return chosen === plannedSecond ? plannedAt : chosen * 1000 + (plannedAt - plannedSecond * 1000)
    },
    bookAt (id, at) {
      release(id)
      take(id, Math.floor(at / 1000))
    },
    release
  }
}
