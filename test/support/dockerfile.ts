import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export interface DockerInstruction { keyword: string, args: string }
export interface DockerStage { from: string, name: string | undefined, instructions: DockerInstruction[] }

/** Joins backslash-continued lines and drops comments and blank lines. */
export function logicalLines (text: string): string[] {
  return text.replace(/\\\r?\n/g, ' ').split(/\r?\n/).map(line => line.trim()).filter(line => line !== '' && !line.startsWith('#'))
}

/** A Dockerfile's stages and their instructions (enough of the syntax for this project's Dockerfile). */
export function parseDockerfile (text: string): DockerStage[] {
  const stages: DockerStage[] = []
  for (const line of logicalLines(text)) {
    const match = /^(\w+)\s+(.*)$/.exec(line)
    if (match === null) continue
    const keyword = match[1]!.toUpperCase()
    const args = match[2]!.trim()
    if (keyword === 'FROM') {
      const from = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/i.exec(args)
      stages.push({ from: from?.[1] ?? '', name: from?.[2], instructions: [] })
    } else {
      stages.at(-1)?.instructions.push({ keyword, args })
    }
  }
  return stages
}

const unquote = (value: string): string => (value.startsWith('"') ? JSON.parse(value) as string : value)

/**
 * The variables the runtime stage's ENV lines set, the last one winning: `ENV a=1 b="two words"`, and the
 * legacy `ENV name value…` form (one variable, the rest of the line its value).
 */
export function runtimeEnv (text: string): Record<string, string> {
  const runtime = parseDockerfile(text).at(-1)
  const env: Record<string, string> = {}
  for (const { args } of runtime?.instructions.filter(instruction => instruction.keyword === 'ENV') ?? []) {
    const legacy = /^([A-Za-z_][A-Za-z0-9_]*)\s+(.*)$/.exec(args)
    if (legacy !== null && !legacy[1]!.includes('=')) {
      env[legacy[1]!] = unquote(legacy[2]!.trim())
      continue
    }
    for (const match of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S+)/g)) env[match[1]!] = unquote(match[2]!)
  }
  return env
}

/** NODE_OPTIONS as the image sets it: the benches run the compiled broker with it, as the image does. */
export function imageNodeOptions (): string | undefined {
  return runtimeEnv(readFileSync(fileURLToPath(new URL('../../Dockerfile', import.meta.url)), 'utf8')).NODE_OPTIONS
}
