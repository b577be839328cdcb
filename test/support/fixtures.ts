import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach } from 'vitest'

/** Something a test opens and must close: close(), else stop() (a process, a server), else disconnect() (an ioredis client). */
export type Closable = { close: () => unknown } | { stop: () => unknown } | { disconnect: () => unknown }

export interface Cleanup {
  /**
   * Closes `resource` after the test (with `close` if given) and returns it, so a test opens and
   * registers in one line: `const kivra = cleanup.add(await startKivraStandIn())`.
   */
  add: {
    <T extends Closable>(resource: T): T
    <T>(resource: T, close: (resource: T) => unknown): T
  }
  /** Runs `close` after the test, for what has no close() of its own (a temp dir, a key prefix). */
  defer: (close: () => unknown) => void
}

/**
 * A list of closes and the one way to run them: last registered first; a close that fails does not keep
 * the others from running, and once all ran the failure is rethrown (several: one AggregateError).
 * useCleanup() is what tests use; this is it without the vitest hook.
 */
export function createCleanup (): Cleanup & { run: () => Promise<void> } {
  const pending: Array<() => unknown> = []
  return {
    add: <T>(resource: T, close?: (resource: T) => unknown): T => {
      const closable = resource as Closable
      pending.push(close === undefined
        ? async () => { await ('close' in closable ? closable.close() : 'stop' in closable ? closable.stop() : closable.disconnect()) }
        : async () => { await close(resource) })
      return resource
    },
    defer: close => { pending.push(close) },
    run: async () => {
      const failures: unknown[] = []
      for (const close of pending.splice(0).reverse()) {
        try {
          await close()
        } catch (err) {
          failures.push(err)
        }
      }
      if (failures.length === 1) throw failures[0]
      if (failures.length > 1) throw new AggregateError(failures, `${failures.length} cleanups failed`)
    }
  }
}

/**
 * Teardown for the tests of the enclosing describe (or file): registers an afterEach (afterAll with
 * `{ after: 'all' }`) that runs everything added or deferred since, as createCleanup() does, so a close
 * that fails still fails the test that opened it without leaking the rest.
 */
export function useCleanup (options: { after?: 'each' | 'all' } = {}): Cleanup {
  const cleanup = createCleanup()
  const hook = options.after === 'all' ? afterAll : afterEach
  hook(cleanup.run)
  return { add: cleanup.add, defer: cleanup.defer }
}

/** A fresh directory under the system temp dir, removed (with what the test put there) by `cleanup`. */
export async function tempDir (cleanup: Cleanup, prefix = 'cb-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  cleanup.defer(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}
