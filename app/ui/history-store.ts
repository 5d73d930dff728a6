/**
 * The last results of this browser, in IndexedDB: images are megabytes of
 * base64 and would overflow localStorage. Entries (small: settings and a
 * thumbnail) and full images live in separate stores, so listing the history
 * never loads the images.
 */
import type { GenerateRequest, Seed } from "@/lib/schemas";
import type { GenerationResult } from "./use-generation";

export const HISTORY_LIMIT = 20;

const DB_NAME = "text2image-gateway";
const ENTRIES = "entries";
const IMAGES = "images";
const THUMBNAIL_PX = 160;

export interface HistoryEntry {
  id: string;
  createdAt: number;
  request: GenerateRequest;
  seed: Seed;
  width: number;
  height: number;
  generationTimeMs: number;
  /** A small JPEG data URI. */
  thumbnail: string;
}

let database: Promise<IDBDatabase> | undefined;

function open(): Promise<IDBDatabase> {
  database ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore(ENTRIES, { keyPath: "id" }).createIndex("createdAt", "createdAt");
      db.createObjectStore(IMAGES);
    };
    request.onsuccess = () => {
      resolve(request.result);
    };
    request.onerror = () => {
      database = undefined; // let a later call try again
      reject(request.error ?? new Error("IndexedDB is not available"));
    };
  });
  return database;
}

function settled<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => {
      resolve(request.result);
    };
    request.onerror = () => {
      reject(request.error ?? new Error("IndexedDB request failed"));
    };
  });
}

function committed(transaction: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => {
      resolve();
    };
    transaction.onerror = transaction.onabort = () => {
      reject(transaction.error ?? new Error("IndexedDB transaction failed"));
    };
  });
}

/** Newest first. */
export async function listHistory(): Promise<HistoryEntry[]> {
  const db = await open();
  const index = db.transaction(ENTRIES, "readonly").objectStore(ENTRIES).index("createdAt");
  const entries = (await settled(index.getAll())) as HistoryEntry[];
  return entries.reverse();
}

/** The full image of an entry, or undefined if it is gone. */
export async function loadImage(id: string): Promise<string | undefined> {
  const db = await open();
  return (await settled(db.transaction(IMAGES, "readonly").objectStore(IMAGES).get(id))) as string | undefined;
}

/** Saves a result and drops the oldest beyond HISTORY_LIMIT, in one transaction. */
export async function addToHistory(result: GenerationResult): Promise<void> {
  const thumbnail = await makeThumbnail(result.image);
  const createdAt = Date.now();
  const entry: HistoryEntry = {
    // Not crypto.randomUUID(): it is missing on plain-http pages (a LAN gateway).
    id: `${createdAt.toString(36)}-${Math.random().toString(36).slice(2, 10)}`,
    createdAt,
    request: result.request,
    seed: result.seed,
    width: result.width,
    height: result.height,
    generationTimeMs: result.generationTimeMs,
    thumbnail,
  };
  const db = await open();
  const transaction = db.transaction([ENTRIES, IMAGES], "readwrite");
  const entries = transaction.objectStore(ENTRIES);
  const images = transaction.objectStore(IMAGES);
  entries.put(entry);
  images.put(result.image, entry.id);
  // Oldest first; requests in one transaction run in order, so the new entry is counted.
  const ids = await settled(entries.index("createdAt").getAllKeys());
  for (const id of ids.slice(0, Math.max(0, ids.length - HISTORY_LIMIT))) {
    entries.delete(id);
    images.delete(id);
  }
  await committed(transaction);
}

export async function clearHistory(): Promise<void> {
  const db = await open();
  const transaction = db.transaction([ENTRIES, IMAGES], "readwrite");
  transaction.objectStore(ENTRIES).clear();
  transaction.objectStore(IMAGES).clear();
  await committed(transaction);
}

/** A small JPEG of the image, so the history list stays light. */
async function makeThumbnail(src: string): Promise<string> {
  const image = new Image();
  image.src = src;
  await image.decode();
  const scale = Math.min(1, THUMBNAIL_PX / Math.max(image.naturalWidth, image.naturalHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(image.naturalWidth * scale));
  canvas.height = Math.max(1, Math.round(image.naturalHeight * scale));
  const context = canvas.getContext("2d");
  if (!context) return src;
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  return canvas.toDataURL("image/jpeg", 0.8);
}
