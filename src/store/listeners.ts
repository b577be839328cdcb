import type { Logger } from 'pino'

/** A grant listener (GrantStore.onGrant). */
export type GrantListener = (key: string, fence?: number) => void

/** Tells every listener of a notice; one that throws is logged and does not stop the others. */
export function notifyListeners (listeners: ReadonlySet<GrantListener>, key: string, fence: number | undefined, log: Pick<Logger, 'warn'>): void {
  for (const listener of [...listeners]) {
    try {
      listener(key, fence)
    } catch (err) {
      log.warn({ key, err }, 'grant listener failed')
    }
  }
}
