/** Redis: one node (REDIS_URL), Sentinel (REDIS_SENTINELS) or Cluster (REDIS_CLUSTER_NODES), and what they share. */
import { readFileSync } from 'node:fs'
import type { Env } from '../config.js'

export interface RedisAddress {
  readonly host: string
  readonly port: number
}

/** Settings every topology shares: key prefix, credentials (ACL user or requirepass) and TLS. */
interface RedisCommonConfig {
  readonly keyPrefix: string
  readonly username: string | undefined
  readonly password: string | undefined
  /** TLS to every Redis node (and sentinel); `ca` is the PEM of REDIS_CACERT, else the system CAs are trusted. */
  readonly tls: { readonly ca: string | undefined } | undefined
}

/** One node (REDIS_URL); the URL may carry credentials and `rediss://` for TLS. */
export interface RedisSingleConfig extends RedisCommonConfig {
  readonly topology: 'single'
  readonly url: string
}

/** A master found through Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD). */
export interface RedisSentinelConfig extends RedisCommonConfig {
  readonly topology: 'sentinel'
  readonly sentinels: readonly RedisAddress[]
  readonly masterName: string
  readonly sentinelPassword: string | undefined
}

/** Redis Cluster from its seed nodes (REDIS_CLUSTER_NODES); the rest of the cluster is discovered. */
export interface RedisClusterConfig extends RedisCommonConfig {
  readonly topology: 'cluster'
  readonly nodes: readonly RedisAddress[]
}

export type RedisConfig = RedisSingleConfig | RedisSentinelConfig | RedisClusterConfig

/** The variables that each choose a Redis topology; exactly one may be set. */
export const redisTopologyVariables = ['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const

/**
 * The Redis topology and its shared settings, or undefined (embedded store). Problems are added to
 * `problems`, one line each, naming the variable.
 */
export function redisConfig (env: Env, problems: string[]): RedisConfig | undefined {
  const chosen = redisTopologyVariables.filter(name => env[name] !== undefined)
  if (chosen.length > 1) {
    problems.push(`${chosen.join(', ')}: set exactly one of REDIS_URL (one node), REDIS_SENTINELS (Sentinel) or REDIS_CLUSTER_NODES (Cluster)`)
  }
  if (env.REDIS_SENTINELS === undefined) {
    for (const name of ['REDIS_SENTINEL_MASTER', 'REDIS_SENTINEL_PASSWORD'] as const) {
      if (env[name] !== undefined) problems.push(`${name}: only used with REDIS_SENTINELS; expected REDIS_SENTINELS=host:port,… as well`)
    }
  }
  if (chosen.length === 0) {
    for (const name of ['REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_TLS', 'REDIS_CACERT'] as const) {
      if (env[name] !== undefined) problems.push(`${name}: set without REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES; expected one of them as well`)
    }
    return undefined
  }

  const url = env.REDIS_URL === undefined ? undefined : new URL(env.REDIS_URL)
  // One place for each credential: a password in the URL and in REDIS_PASSWORD would leave the reader guessing which wins.
  if (url !== undefined && url.password !== '' && env.REDIS_PASSWORD !== undefined) problems.push('REDIS_PASSWORD: REDIS_URL already carries a password; set it in one place only')
  if (url !== undefined && url.username !== '' && env.REDIS_USERNAME !== undefined) problems.push('REDIS_USERNAME: REDIS_URL already carries a user name; set it in one place only')
  const tlsByUrl = url?.protocol === 'rediss:'
  if (tlsByUrl && env.REDIS_TLS === 'false') problems.push('REDIS_TLS: false contradicts the rediss:// REDIS_URL; expected true or unset')
  const tls = tlsByUrl || env.REDIS_TLS === 'true'
  let ca: string | undefined
  if (env.REDIS_CACERT !== undefined) {
    if (!tls) problems.push('REDIS_CACERT: only used with TLS; expected REDIS_TLS=true (or a rediss:// REDIS_URL) as well')
    try {
      ca = readFileSync(env.REDIS_CACERT, 'utf8')
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) problems.push(`REDIS_CACERT: "${env.REDIS_CACERT}" holds no PEM certificate; expected a PEM file of the CA certificate(s)`)
    } catch (err) {
      problems.push(`REDIS_CACERT: cannot read "${env.REDIS_CACERT}" (${(err as NodeJS.ErrnoException).code ?? 'error'}); expected a readable PEM file`)
    }
  }
  const common = {
    keyPrefix: env.REDIS_KEY_PREFIX,
    username: env.REDIS_USERNAME,
    password: env.REDIS_PASSWORD,
    tls: tls ? { ca } : undefined
  }
  if (env.REDIS_URL !== undefined) return { topology: 'single', url: env.REDIS_URL, ...common }
  if (env.REDIS_SENTINELS !== undefined) {
    if (env.REDIS_SENTINEL_MASTER === undefined) problems.push('REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS; expected the name the sentinels monitor the master under (sentinel monitor <name> …)')
    return {
      topology: 'sentinel',
      sentinels: parseAddressList('REDIS_SENTINELS', env.REDIS_SENTINELS, problems),
      masterName: env.REDIS_SENTINEL_MASTER ?? '',
      sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
      ...common
    }
  }
  return { topology: 'cluster', nodes: parseAddressList('REDIS_CLUSTER_NODES', env.REDIS_CLUSTER_NODES ?? '', problems), ...common }
}

/** "host:port,host:port" (an IPv6 host in brackets: "[::1]:6379"), each entry checked. */
function parseAddressList (name: string, value: string, problems: string[]): RedisAddress[] {
  const addresses: RedisAddress[] = []
  const entries = value.split(',').map(entry => entry.trim()).filter(entry => entry !== '')
  if (entries.length === 0) problems.push(`${name}: expected a comma-separated list of host:port`)
  for (const entry of entries) {
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(entry)
    const port = Number(match?.[3])
    if (match === null || port < 1 || port > 65535) {
      problems.push(`${name}: "${entry}" is not host:port; expected a comma-separated list of host:port (port 1-65535)`)
      continue
    }
    addresses.push({ host: match[1] ?? match[2] as string, port })
  }
  return addresses
}
