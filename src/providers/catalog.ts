/**
 * The one catalog of providers. What a provider is (token or signing, documented hosts, default lifetime,
 * secret fields, scopes, backend-only, webhook scheme, adapter) is written once, in the provider's own file,
 * and listed here; config, routes, broker and metrics all read it from here.
 *
 * Adding a provider: its file in src/providers/ exporting a descriptor, and one line below.
 */
import type { CredentialConfig } from '../config.js'
import { baseUrlOf, endpointUrlOf } from './common.js'
import { kigoProvider } from './kigo.js'
import { kivraProvider } from './kivra.js'
import { klaviProvider } from './klavi.js'
import { oauth2Provider } from './oauth2.js'
import { sirGivingProvider } from './sir-giving.js'
import type { ProviderAdapter, ProviderDescriptor, WebhookVerifier } from './types.js'

export const providerCatalog = {
  kivra: kivraProvider,
  kigo: kigoProvider,
  klavi: klaviProvider,
  'sir-giving': sirGivingProvider,
  oauth2: oauth2Provider
} as const satisfies Record<string, ProviderDescriptor>

export type ProviderKind = keyof typeof providerCatalog

/** Every provider kind, in catalog order (the `provider` values a credentials file may use). */
export const providerKinds = Object.keys(providerCatalog) as [ProviderKind, ...ProviderKind[]]

export function descriptorOf (kind: ProviderKind): ProviderDescriptor {
  return providerCatalog[kind]
}

/**
 * The lifetime a credential's tokens are expected to have before any is held: its `lifetime_seconds`, else
 * the provider's default. Undefined for signing credentials.
 */
export function expectedLifetimeSeconds (credential: Pick<CredentialConfig, 'provider' | 'lifetime_seconds'>): number | undefined {
  const descriptor = descriptorOf(credential.provider)
  if (descriptor.mechanism === 'signing') return undefined
  return credential.lifetime_seconds ?? descriptor.defaultLifetimeSeconds
}

type HostedCredential = Pick<CredentialConfig, 'provider' | 'environment' | 'base_url'>

/** The base URL a credential talks to: its `base_url`, else the provider's documented host for its environment. */
export function baseUrlFor (credential: HostedCredential): string {
  return baseUrlOf(credential, descriptorOf(credential.provider).hosts)
}

/** The URL of a documented endpoint (`path` starts with "/") under the credential's base URL. */
export function endpointUrl (credential: HostedCredential, path: string): URL {
  return endpointUrlOf(credential, descriptorOf(credential.provider).hosts, path)
}

type ProxiedCredential = HostedCredential & Pick<CredentialConfig, 'api_base_url'>

/**
 * Where the proxy sends a credential's API calls: its `api_base_url`, else the provider's documented API
 * host for its environment (for Kivra, Kigo, Klavi and SIR Giving the API lives on the same documented host
 * as the token endpoint, docs/providers.md, so `base_url` overrides both). Undefined for a provider without
 * documented hosts (generic OAuth2): its API is wherever its `api_base_url` says.
 */
export function apiBaseUrlFor (credential: ProxiedCredential): string | undefined {
  if (credential.api_base_url !== undefined) return credential.api_base_url.replace(/\/+$/, '')
  if (descriptorOf(credential.provider).hosts === undefined) return undefined
  return baseUrlFor(credential)
}

export interface ProviderRegistry {
  /** One adapter per provider kind. */
  readonly adapters: ReadonlyMap<ProviderKind, ProviderAdapter>
  /** The adapter of a provider kind (every kind has one). */
  adapterFor: (kind: ProviderKind) => ProviderAdapter
  /** The webhook verifier of a provider kind, or undefined when the provider sends no signed webhooks we know of. */
  webhookVerifierFor: (kind: ProviderKind) => WebhookVerifier | undefined
}

/** Fresh adapters for every provider kind (adapters keep small per-instance state, e.g. warn-once sets). Tests may pass their own. */
export function createProviderRegistry (): ProviderRegistry {
  const adapters = new Map<ProviderKind, ProviderAdapter>(providerKinds.map(kind => [kind, descriptorOf(kind).createAdapter()]))
  return {
    adapters,
    adapterFor: (kind) => {
      const adapter = adapters.get(kind)
      if (adapter === undefined) throw new TypeError(`no adapter for provider "${String(kind)}"`)
      return adapter
    },
    webhookVerifierFor: (kind) => descriptorOf(kind).webhookVerifier
  }
}
