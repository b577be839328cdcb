import type { SecretData } from '../providers/types.js'

export interface SecretValue {
  data: SecretData
  /** KV v2 version; the file source reports 1 and bumps it when the file changes. */
  version: number
}

export type SecretSourceState = 'ok' | 'degraded' | 'down'

export interface SecretSourceHealth {
  state: SecretSourceState
  /** Short operator-facing reason, never a secret. */
  detail?: string | undefined
  /** Vault only: whether a valid Vault token is held (a sealed Vault can be degraded while authenticated). */
  authenticated?: boolean | undefined
}

/** Where client secrets come from: Vault KV v2, or a local file in embedded mode. */
export interface SecretSource {
  readonly kind: 'vault' | 'file'
  /** Authenticate (Vault login) and start background renewal. */
  start: () => Promise<void>
  /** Read the latest version of a secret at "<mount>/<path>". */
  read: (path: string) => Promise<SecretValue>
  /** The latest version number without reading the data (KV v2 metadata); used by the rotation check. */
  latestVersion: (path: string) => Promise<number>
  /**
   * The version before `current` and when `current` was created, when the source keeps versions (Vault
   * KV v2) and that version can still be read (not deleted or destroyed); undefined otherwise. Used to
   * roll back to the previous secret when the provider rejects a new one (secret rollover).
   */
  previousVersion?: (path: string, current: number) => Promise<PreviousVersion | undefined>
  health: () => SecretSourceHealth
  close: () => Promise<void>
}

export interface PreviousVersion {
  value: SecretValue
  /** When the current version was written (epoch ms). */
  currentCreatedAt: number
}
