/**
 * Provider stand-ins: for tests, benches, the demo, and the embedded default (`npm start` on the example
 * credentials starts them in its own process, see embedded.ts). Each is a real HTTP server following
 * docs/providers.md; see stand-in.ts for the shared API (url, setFault, clearFaults, mints, attempts, requests,
 * tokenInfo, isTokenValid, close) and each provider file for its contract.
 */
import { startKigoStandIn, type KigoStandIn, type KigoStandInOptions } from './kigo.js'
import { startKivraStandIn, type KivraStandIn, type KivraStandInOptions } from './kivra.js'
import { startKlaviStandIn, type KlaviStandIn, type KlaviStandInOptions } from './klavi.js'
import { startOAuth2StandIn, type OAuth2StandIn, type OAuth2StandInOptions } from './oauth2.js'
import { startSirGivingStandIn, type SirGivingStandIn, type SirGivingStandInOptions } from './sir-giving.js'
import type { ProviderStandIn, StandInOptions } from './stand-in.js'

export * from './stand-in.js'
export * from './kivra.js'
export * from './kigo.js'
export * from './klavi.js'
export * from './sir-giving.js'
export * from './oauth2.js'

export interface ProviderStandIns {
  kivra: KivraStandIn
  kigo: KigoStandIn
  klavi: KlaviStandIn
  sirGiving: SirGivingStandIn
  oauth2: OAuth2StandIn
  /** All five, for loops (clearFaults, counts). */
  all: ProviderStandIn[]
  /** Closes every stand-in. */
  close: () => Promise<void>
}

export interface ProviderStandInsOptions extends StandInOptions {
  kivra?: KivraStandInOptions
  kigo?: KigoStandInOptions
  klavi?: KlaviStandInOptions
  sirGiving?: SirGivingStandInOptions
  oauth2?: OAuth2StandInOptions
}

/**
 * Starts one stand-in per provider on 127.0.0.1 (port 0 each). `now` (the shared clock) applies to all;
 * per-provider options override it. If one fails to start, the ones already started are closed.
 */
export async function startProviderStandIns (options: ProviderStandInsOptions = {}): Promise<ProviderStandIns> {
  const shared: StandInOptions = options.now === undefined ? {} : { now: options.now }
  const started = await Promise.allSettled([
    startKivraStandIn({ ...shared, ...options.kivra }),
    startKigoStandIn({ ...shared, ...options.kigo }),
    startKlaviStandIn({ ...shared, ...options.klavi }),
    startSirGivingStandIn({ ...shared, ...options.sirGiving }),
    startOAuth2StandIn({ ...shared, ...options.oauth2 })
  ])
  const failed = started.find(result => result.status === 'rejected')
  if (failed !== undefined) {
    await Promise.all(started.map(async result => { if (result.status === 'fulfilled') await result.value.close() }))
    throw (failed as PromiseRejectedResult).reason
  }
  const [kivra, kigo, klavi, sirGiving, oauth2] = started.map(result => (result as PromiseFulfilledResult<ProviderStandIn>).value) as [KivraStandIn, KigoStandIn, KlaviStandIn, SirGivingStandIn, OAuth2StandIn]
  const all: ProviderStandIn[] = [kivra, kigo, klavi, sirGiving, oauth2]
  return {
    kivra,
    kigo,
    klavi,
    sirGiving,
    oauth2,
    all,
    close: async () => { await Promise.all(all.map(async standIn => { await standIn.close() })) }
  }
}
