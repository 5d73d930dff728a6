"use client";

/**
 * The history: the caller's jobs as the gateway lists them, images by URL.
 * The page keeps only a note of each (its settings, a few hundred bytes) so
 * that an entry the gateway no longer has (past JOB_TTL) can say so.
 */
import { useEffect } from "react";
import useSWR from "swr";
import { seedValue, validateGenerateRequest } from "@/lib/schemas";
import type { GenerateRequest, Seed } from "@/lib/schemas";
import type { Job } from "@/lib/api-shapes";
import { listJobs } from "./api";
import { jobResult } from "./use-generation";
import type { GenerationResult } from "./use-generation";

export const HISTORY_LIMIT = 20;

const NOTES = "text2image-gateway.history";
/** Where the page kept full images before jobs: megabytes of base64, freed once. */
const OLD_DATABASE = "text2image-gateway";

export interface HistoryEntry {
  id: string;
  createdAt: number;
  request: GenerateRequest;
  seed: Seed;
  /** The image and what it was made with; absent once the gateway no longer has it. */
  result?: GenerationResult;
}

/** What the page keeps of an entry; seeds as digits, as JSON has no bigint. */
interface Note {
  id: string;
  createdAt: number;
  /** Whose job it was: a hash of the API key, so another key's entries never show as expired. */
  owner: string;
  request: Omit<GenerateRequest, "seed"> & { seed: string };
  seed: string;
}

function readNotes(): Note[] {
  try {
    const notes = JSON.parse(localStorage.getItem(NOTES) ?? "[]") as unknown;
    return Array.isArray(notes) ? (notes as Note[]) : [];
  } catch {
    return [];
  }
}

function writeNotes(notes: Note[]): void {
  try {
    localStorage.setItem(NOTES, JSON.stringify(notes));
  } catch {
    // storage off or full: expired entries then just leave the list
  }
}

/** FNV-1a: enough to tell keys apart, and says nothing of the key. */
function ownerOf(apiKey: string): string {
  let hash = 0x811c9dc5;
  for (const char of apiKey.trim()) hash = Math.imul(hash ^ (char.codePointAt(0) ?? 0), 0x01000193) >>> 0;
  return hash.toString(36);
}

function toEntry(job: Job): HistoryEntry | undefined {
  // The fields as sent, read as the gateway reads a request.
  const request = validateGenerateRequest(job.input);
  if (job.status !== "succeeded" || !job.output || !request.ok) return undefined;
  const result = jobResult(job.output, request.data, 0);
  return { id: job.id, createdAt: Date.parse(job.created_at), request: request.data, seed: result.seed, result };
}

function noteOf(entry: HistoryEntry, owner: string): Note {
  return { id: entry.id, createdAt: entry.createdAt, owner, request: { ...entry.request, seed: String(entry.request.seed) }, seed: String(entry.seed) };
}

function fromNote(note: Note): HistoryEntry {
  return { id: note.id, createdAt: note.createdAt, request: { ...note.request, seed: seedValue(BigInt(note.request.seed)) }, seed: seedValue(BigInt(note.seed)) };
}

/**
 * The gateway's list of this caller's finished images, newest first, with the
 * entries it no longer has (noted here before) marked by a missing result.
 */
async function loadHistory(apiKey: string): Promise<HistoryEntry[]> {
  const { jobs, complete } = await listJobs(HISTORY_LIMIT, apiKey);
  const live = jobs.flatMap((job) => toEntry(job) ?? []);
  const owner = ownerOf(apiKey);
  const listed = new Set(jobs.map((job) => job.id));
  const oldestListed = Math.min(...jobs.map((job) => Date.parse(job.created_at)));
  const notes = readNotes();
  // A noted entry is gone if the list would have held it: it is no older than the list's oldest, or the list is all there is.
  const gone = notes.filter((note) => note.owner === owner && !listed.has(note.id) && (complete || note.createdAt >= oldestListed)).map(fromNote);
  const entries = [...live, ...gone].sort((a, b) => b.createdAt - a.createdAt).slice(0, HISTORY_LIMIT);
  const kept = new Set(entries.map((entry) => entry.id));
  writeNotes([...notes.filter((note) => note.owner !== owner), ...entries.filter((entry) => kept.has(entry.id)).map((entry) => noteOf(entry, owner))]);
  return entries;
}

/** The history, when the gateway serves jobs (`jobs`); undefined while unknown. */
export function useHistory(jobs: boolean | undefined, apiKey: string) {
  useEffect(() => {
    try {
      indexedDB.deleteDatabase(OLD_DATABASE);
    } catch {
      // IndexedDB off: nothing was kept there
    }
  }, []);
  return useSWR(jobs ? ["history", apiKey] : null, ([, key]) => loadHistory(key), { revalidateOnFocus: false });
}
