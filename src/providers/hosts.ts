import type { CredentialConfig, ProviderKind } from '../config.js'
import { ProviderError } from '../errors.js'

type Environment = CredentialConfig['environment']

/**
 * The hosts each provider documents, per environment (providers.md). A credential's `base_url` overrides
 * them (stand-ins in tests, Klavi's "testing" host, a proxy). Generic OAuth2 has no documented host: its
 * credentials name a `token_url`.
 */
export const providerHosts = {
  kivra: {
    production: 'https://sender.api.kivra.com',
    sandbox: 'https://sender.sandbox-api.kivra.com'
  },
  // From a public Kigo front end, not the official docs (providers.md); "sandbox" maps to their staging host.
  kigo: {
    production: 'https://api.kigodigital.net',
    sandbox: 'https://kigo-core-server-stage.kigodigital.net'
  },
  // Klavi also has https://api-testing.klavi.ai; use base_url for it.
  klavi: {
    production: 'https://api.klavi.ai',
    sandbox: 'https://api-sandbox.klavi.ai'
  },
  'sir-giving': {
    production: 'https://api.sirgiving.org',
    sandbox: 'https://devapi.sirgiving.org'
  }
} as const satisfies Record<Exclude<ProviderKind, 'oauth2'>, Record<Environment, string>>

/**
 * The base URL a credential talks to: its `base_url` override, else the provider's documented host for its
 * environment. Trailing slashes are dropped so that a documented path can be appended as is.
 */
export function baseUrlFor (credential: Pick<CredentialConfig, 'provider' | 'environment' | 'base_url'>): string {
  if (credential.base_url !== undefined) return credential.base_url.replace(/\/+$/, '')
  if (credential.provider === 'oauth2') {
    throw new ProviderError('permanent', 'oauth2 credentials have no documented host; configure token_url')
  }
  return providerHosts[credential.provider][credential.environment]
}

/**
 * The URL of a documented endpoint (`path` starts with "/") under the credential's base URL. A base URL
 * with a path prefix (a proxy) keeps its prefix, which `new URL(path, base)` would drop.
 */
export function endpointUrl (credential: Pick<CredentialConfig, 'provider' | 'environment' | 'base_url'>, path: string): URL {
  return new URL(baseUrlFor(credential) + path)
}
