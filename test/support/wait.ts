/**
 * Waiting in tests. Two tools, no others: vitest's `vi.waitFor(() => { expect(...) }, { timeout, interval })`
 * when the thing awaited is an assertion (its failure message shows the values), and `waitFor` below when
 * it is a condition best named in words ("the rotation event"). For a fixed pause, `sleep` from
 * src/time.ts. `waitFor` does not need vitest, so harness code that bench/ runs outside it can use it.
 */
// Not src/time.ts's sleep: that one never keeps the process alive, and a wait outside vitest (bench/
// starting a broker whose process has just exited) would end the process mid-wait instead of failing.
import { setTimeout as pause } from 'node:timers/promises'

export interface WaitOptions {
  /** How long to wait at most, in ms (default 5000). */
  timeout?: number
  /** How long to pause between checks, in ms (default 25). */
  interval?: number
  /** Count a condition that throws as not yet met (waiting through a failover, where calls fail for a while). */
  throughErrors?: boolean
}

/**
 * Polls `condition` until it returns true and resolves with the time (Date.now()) it held; fails naming
 * `what` once `timeout` ms have passed. An error thrown by the condition fails the wait at once, unless
 * `throughErrors` says it is expected for a while.
 */
export async function waitFor (what: string, condition: () => boolean | Promise<boolean>, options: WaitOptions = {}): Promise<number> {
  const timeout = options.timeout ?? 5000
  const deadline = Date.now() + timeout
  for (;;) {
    const met = options.throughErrors === true ? await Promise.resolve().then(condition).catch(() => false) : await condition()
    if (met) return Date.now()
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
    await pause(options.interval ?? 25)
  }
}
