/**
 * The rules every URL the broker sends a secret or trusts keys from must meet (provider token and API
 * hosts, the caller JWKS). Written once so each URL field, today's and a later one, uses the same rules:
 * `providerUrl` for the field, `requireHttpsUnlessLoopback` in the object's refinement (the https rule
 * depends on a sibling field, `allow_insecure_http`, so it cannot live on the field itself).
 */
import { BlockList, isIP } from 'node:net'
import { z } from 'zod'

const loopback = new BlockList()
loopback.addSubnet('127.0.0.0', 8, 'ipv4')
loopback.addAddress('::1', 'ipv6')

/**
 * Addresses no provider lives at: link-local (169.254.169.254 is the cloud metadata service, which hands
 * out the node's own credentials), multicast, and unspecified ("this host" on some stacks). A URL there is
 * a typo or an attempt to make the broker send a client secret somewhere it should not.
 */
const forbidden: ReadonlyArray<{ name: string, list: BlockList }> = [
  { name: 'link-local', list: subnets([['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6']]) },
  { name: 'multicast', list: subnets([['224.0.0.0', 4, 'ipv4'], ['ff00::', 8, 'ipv6']]) },
  { name: 'unspecified', list: subnets([['0.0.0.0', 32, 'ipv4'], ['::', 128, 'ipv6']]) }
]

function subnets (entries: Array<[string, number, 'ipv4' | 'ipv6']>): BlockList {
  const list = new BlockList()
  for (const [network, prefix, family] of entries) list.addSubnet(network, prefix, family)
  return list
}

/** The address of a URL's hostname when it is an IP literal (WHATWG URL has already normalised forms like 0x7f.1). */
function ipOf (hostname: string): { address: string, family: 'ipv4' | 'ipv6' } | undefined {
  const address = hostname.replace(/^\[|\]$/g, '')
  const version = isIP(address)
  return version === 0 ? undefined : { address, family: version === 6 ? 'ipv6' : 'ipv4' }
}

/** True for hosts that cannot leave the machine (127.0.0.0/8, ::1, localhost): plain http is fine there. */
export function isLoopbackHost (hostname: string): boolean {
  const host = hostname.toLowerCase()
  if (host === 'localhost') return true
  const ip = ipOf(host)
  return ip !== undefined && loopback.check(ip.address, ip.family)
}

/** An http(s) URL with no user:password part and no link-local, multicast or unspecified address. */
export const providerUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).superRefine((value, ctx) => {
  // zod runs this refinement even when z.url() has refused the value: that issue is already reported.
  if (!URL.canParse(value)) return
  const url = new URL(value)
  if (url.username !== '' || url.password !== '') {
    ctx.addIssue({ code: 'custom', message: 'expected no user:password@ in the URL (secrets belong in Vault or the secrets file)' })
  }
  const ip = ipOf(url.hostname)
  const kind = ip === undefined ? undefined : forbidden.find(entry => entry.list.check(ip.address, ip.family))
  if (kind !== undefined) ctx.addIssue({ code: 'custom', message: `expected a provider's address, not a ${kind.name} one (${url.hostname})` })
})

/**
 * Adds an issue at `path` when `value` is a plain http URL to a host other than loopback: anyone on the
 * path could read the client secret, or (for a JWKS) serve keys and become any caller. `allowInsecureHttp`
 * is a credential's documented lab switch (true lifts the rule); undefined where no switch exists (the JWKS).
 */
export function requireHttpsUnlessLoopback (ctx: z.RefinementCtx, path: PropertyKey[], value: unknown, allowInsecureHttp?: boolean): void {
  if (typeof value !== 'string' || !URL.canParse(value) || allowInsecureHttp === true) return
  const url = new URL(value)
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    const lab = allowInsecureHttp === undefined ? '' : ', or allow_insecure_http: true on a lab credential'
    ctx.addIssue({ code: 'custom', path, message: `expected https (plain http only to a loopback host${lab})` })
  }
}
