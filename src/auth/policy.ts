import type { Caller, CredentialConfig } from '../config.js'
import { BrokerError } from '../errors.js'

/** Deny by default: a caller may use a credential only if the credential lists it. */
export function mayUse (caller: Caller, credential: CredentialConfig): boolean {
  if (!credential.allowed_callers.includes(caller.id)) return false
  // Partner tokens are backend-only: a front-end caller never receives one, even if listed by mistake.
  if (credential.backend_only && caller.frontend) return false
  return true
}

export function assertMayUse (caller: Caller, credential: CredentialConfig): void {
  if (!mayUse(caller, credential)) throw new BrokerError('CB_FORBIDDEN', `caller "${caller.id}" may not use credential "${credential.id}"`)
}

export function assertAdmin (caller: Caller): void {
  if (!caller.admin) throw new BrokerError('CB_FORBIDDEN', `caller "${caller.id}" is not an admin`)
}
