/**
 * The credentials of this replica and every grant key it serves: each token credential's default grant,
 * its scoped grants (at most `max_scoped_grants`), and its Kigo user sessions (at most
 * `user_sessions.cached` in memory, least recently used forgotten first — the store still holds them).
 */
import type { CredentialConfig } from '../config.js'
import { BrokerError } from '../errors.js'
import type { SigningAdapter, TokenAdapter } from '../providers/types.js'
import type { SessionUser } from './grant-identity.js'
import { GrantState, type CredentialEntry, type TokenCredential } from './grant-state.js'

export interface CredentialTable {
  /** The credential with this id, or CB_CREDENTIAL_NOT_FOUND. */
  entry: (credentialId: string) => CredentialEntry
  /** The token credential with this id, or CB_CREDENTIAL_NOT_FOUND / CB_UNSUPPORTED_OPERATION. */
  token: (credentialId: string) => TokenCredential
  /** The token credential with this id, or undefined (unknown, or a signing credential): no error built. */
  findToken: (credentialId: string) => TokenCredential | undefined
  /** The grant state of a credential's scope set (normalised), made on first use; CB_RATE_LIMITED past max_scoped_grants. */
  scoped: (credential: TokenCredential, scope: string) => GrantState
  /** The grant state of a Kigo user's session, made on first use. */
  userSession: (credential: TokenCredential, user: SessionUser) => GrantState
  /** The grant state of a grant key, if this replica serves it now. */
  grantByKey: (key: string) => GrantState | undefined
  /** Forgets a variant's state here (its grant stays in the store until it expires). */
  retire: (state: GrantState) => void
  /** How many scoped grants and user sessions this replica holds for a credential now. */
  variantCounts: (credentialId: string) => { scopedGrants: number, userSessionsCached: number }
  entries: () => IterableIterator<CredentialEntry>
  /** Every grant state held now, defaults and variants. */
  grants: () => GrantState[]
  /** The default grants: the ones loaded and scheduled at start. */
  defaultGrants: () => GrantState[]
  size: number
}

export interface CredentialTableDeps {
  credentials: readonly CredentialConfig[]
  adapterFor: (config: CredentialConfig) => TokenAdapter | SigningAdapter
  /** The adapter that makes and renews a Kigo user's session (broker.ts builds it over the partner token). */
  userSessionAdapter: (credential: TokenCredential, user: SessionUser) => TokenAdapter
  now: () => number
}

export function createCredentialTable ({ credentials, adapterFor, userSessionAdapter, now }: CredentialTableDeps): CredentialTable {
  const byId = new Map<string, CredentialEntry>()
  const byKey = new Map<string, GrantState>()
  /** Scoped grants and user sessions per credential id, in order of last use (oldest first). */
  const scopedOf = new Map<string, Map<string, GrantState>>()
  const usersOf = new Map<string, Map<string, GrantState>>()
  for (const config of credentials) {
    const adapter = adapterFor(config)
    if (adapter.kind === 'token') {
      const grant = new GrantState(config, adapter)
      byId.set(config.id, { mechanism: 'token', config, adapter, grant })
      byKey.set(grant.key, grant)
      scopedOf.set(config.id, new Map())
      usersOf.set(config.id, new Map())
    } else {
      byId.set(config.id, { mechanism: 'signing', config, adapter, secretVersion: undefined })
    }
  }

  function add (states: Map<string, GrantState>, id: string, state: GrantState): GrantState {
    states.set(id, state)
    byKey.set(state.key, state)
    return state
  }

  /** Moves a state to the end of its map (most recently used). */
  function touch (states: Map<string, GrantState>, id: string, state: GrantState): GrantState {
    states.delete(id)
    states.set(id, state)
    return state
  }

  function retire (state: GrantState): void {
    const maps = [scopedOf.get(state.credential.id), usersOf.get(state.credential.id)]
    for (const states of maps) {
      for (const [id, candidate] of states ?? []) if (candidate === state) states?.delete(id)
    }
    if (byKey.get(state.key) === state && state.variant.kind !== 'default') byKey.delete(state.key)
  }

  /** Frees room by forgetting the least recently used states that nothing waits on; true when below `limit`. */
  function makeRoom (states: Map<string, GrantState>, limit: number, forgettable: (state: GrantState) => boolean): boolean {
    for (const state of [...states.values()]) {
      if (states.size < limit) break
      if (state.idle && forgettable(state)) retire(state)
    }
    return states.size < limit
  }

  return {
    entry (credentialId) {
      const entry = byId.get(credentialId)
      if (entry === undefined) throw new BrokerError('CB_CREDENTIAL_NOT_FOUND', 'no credential with this id')
      return entry
    },
    token (credentialId) {
      const entry = this.entry(credentialId)
      if (entry.mechanism !== 'token') {
        throw new BrokerError('CB_UNSUPPORTED_OPERATION', `credential "${credentialId}" is a signing credential; it has no token (use /signatures)`)
      }
      return entry
    },
    findToken (credentialId) {
      const entry = byId.get(credentialId)
      return entry?.mechanism === 'token' ? entry : undefined
    },
    scoped (credential, scope) {
      const states = scopedOf.get(credential.config.id) as Map<string, GrantState>
      const known = states.get(scope)
      if (known !== undefined) return touch(states, scope, known)
      const limit = credential.config.max_scoped_grants
      // A scoped grant no longer held (expired, never minted) makes room; one still valid does not.
      if (!makeRoom(states, limit, state => state.held === undefined || state.held.expiresAt <= now())) {
        throw new BrokerError('CB_SCOPED_GRANT_LIMIT', `credential "${credential.config.id}" already holds ${limit} scoped grants (max_scoped_grants)`, { retryAfterSeconds: 60 })
      }
      return add(states, scope, new GrantState({ ...credential.config, scope }, credential.adapter, { kind: 'scope', scope }))
    },
    userSession (credential, user) {
      const states = usersOf.get(credential.config.id) as Map<string, GrantState>
      const id = user.external_user_id
      const known = states.get(id)
      if (known !== undefined) return touch(states, id, known)
      // The memory bound: the least recently used sessions are forgotten here (Redis keeps them).
      makeRoom(states, credential.config.user_sessions.cached, () => true)
      return add(states, id, new GrantState(credential.config, userSessionAdapter(credential, user), { kind: 'user', user }))
    },
    grantByKey: key => byKey.get(key),
    retire,
    variantCounts: credentialId => ({ scopedGrants: scopedOf.get(credentialId)?.size ?? 0, userSessionsCached: usersOf.get(credentialId)?.size ?? 0 }),
    entries: () => byId.values(),
    grants: () => [...byKey.values()],
    defaultGrants: () => [...byKey.values()].filter(state => state.variant.kind === 'default'),
    size: byId.size
  }
}
