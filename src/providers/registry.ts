import type { ProviderKind } from '../config.js'
import { createKigoAdapter } from './kigo.js'
import { createKivraAdapter } from './kivra.js'
import { createKlaviAdapter } from './klavi.js'
import { createOAuth2Adapter } from './oauth2.js'
import { createSirGivingAdapter } from './sir-giving.js'
import type { ProviderAdapter, WebhookVerifier } from './types.js'
import { kivraWebhookVerifier, klaviWebhookVerifier, sirGivingWebhookVerifier } from './webhooks.js'

interface ProviderEntry {
  createAdapter: () => ProviderAdapter
  webhookVerifier?: WebhookVerifier
}

/**
 * Adding a provider = its adapter file + one line here. `satisfies Record<ProviderKind, …>` makes a
 * provider kind added to config.ts without an entry here a type error.
 */
const providers = {
  kivra: { createAdapter: createKivraAdapter, webhookVerifier: kivraWebhookVerifier },
  kigo: { createAdapter: createKigoAdapter },
  klavi: { createAdapter: createKlaviAdapter, webhookVerifier: klaviWebhookVerifier },
  'sir-giving': { createAdapter: createSirGivingAdapter, webhookVerifier: sirGivingWebhookVerifier },
  oauth2: { createAdapter: createOAuth2Adapter }
} as const satisfies Record<ProviderKind, ProviderEntry>

export interface ProviderRegistry {
  /** One adapter per provider kind. */
  readonly adapters: ReadonlyMap<ProviderKind, ProviderAdapter>
  /** The adapter of a provider kind (every kind has one). */
  adapterFor: (kind: ProviderKind) => ProviderAdapter
  /** The webhook verifier of a provider kind, or undefined when the provider sends no signed webhooks we know of. */
  webhookVerifierFor: (kind: ProviderKind) => WebhookVerifier | undefined
}

/** Builds fresh adapters for every provider kind (adapters keep small per-instance state, e.g. warn-once sets). */
export function createProviderRegistry (): ProviderRegistry {
  const entries: ReadonlyArray<[ProviderKind, ProviderEntry]> = Object.entries(providers) as Array<[ProviderKind, ProviderEntry]>
  const adapters = new Map<ProviderKind, ProviderAdapter>(entries.map(([kind, entry]) => [kind, entry.createAdapter()]))
  return {
    adapters,
    adapterFor: (kind) => {
      const adapter = adapters.get(kind)
      if (adapter === undefined) throw new TypeError(`no adapter for provider "${String(kind)}"`)
      return adapter
    },
    webhookVerifierFor: (kind) => (providers as Record<ProviderKind, ProviderEntry>)[kind]?.webhookVerifier
  }
}
