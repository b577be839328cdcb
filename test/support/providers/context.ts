/**
 * Builds what an adapter call needs in tests: a validated CredentialConfig (through the real zod schema,
 * so defaults such as timeout_ms apply) and a ProviderContext with an injected clock and a logger whose
 * lines are captured for assertions.
 */
import { CredentialSchema, type CredentialConfig } from '../../../src/config.js'
import type { ProviderKind } from '../../../src/providers/catalog.js'
import { type ProviderContext } from '../../../src/providers/types.js'
import { ProviderError } from '../../../src/errors.js'
import { captureLogs, type CapturedLogs } from '../logs.js'

/** A fixed, realistic instant (2023-11-14T22:13:20Z) so expiry arithmetic is easy to read in tests. */
export const fixedNow = 1_700_000_000_000

/** A credential for `provider`; `overrides` are the credentials-file fields (base_url, token_url, scope, ...). */
export function testCredential (provider: ProviderKind, overrides: Record<string, unknown> = {}): CredentialConfig {
  return CredentialSchema.parse({
    id: `${provider}-test`,
    provider,
    environment: 'sandbox',
    secret: `secret/providers/${provider}`,
    ...overrides
  })
}

/** A ProviderContext with a clock returning `now` (a number or a function) and a captured log. */
export function testContext (credential: CredentialConfig, options: { now?: number | (() => number), signal?: AbortSignal } = {}): ProviderContext & { captured: CapturedLogs } {
  const captured = captureLogs()
  const now = options.now ?? fixedNow
  return {
    credential,
    now: typeof now === 'function' ? now : () => now,
    // The engine hands adapters a child bound to the credential id (minter.ts); so does this context.
    log: captured.log.child({ credentialId: credential.id }),
    signal: options.signal,
    captured
  }
}

/** Awaits a call that must fail with a ProviderError and returns it (anything else fails the test). */
export async function providerError (call: Promise<unknown>): Promise<ProviderError> {
  try {
    await call
  } catch (err) {
    if (err instanceof ProviderError) return err
    throw err
  }
  throw new Error('expected a ProviderError, but the call succeeded')
}
