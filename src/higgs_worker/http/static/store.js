// Takes kept across reloads: one IndexedDB record per take in this browser (its audio as a Blob, its text, voice,
// seed, settings and timings), keyed by the take's number. Nothing leaves the browser.

const DB_NAME = "higgs-studio";
const TAKES = "takes";

let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      if (!window.indexedDB) {
        reject(new Error("this browser keeps no data for pages (no IndexedDB)"));
        return;
      }
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(TAKES, { keyPath: "n" });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error || new Error("the take store could not be opened"));
      request.onblocked = () => reject(new Error("another tab holds an older take store; close it and reload"));
    });
    opening.catch(() => { opening = null; }); // a later call tries again
  }
  return opening;
}

/** Runs `work(store)` in one transaction; resolves with the value of the request it returns, once committed. */
async function transact(mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(TAKES, mode);
    const request = work(tx.objectStore(TAKES));
    tx.oncomplete = () => resolve(request ? request.result : undefined);
    tx.onerror = () => reject(tx.error || new Error("the take store refused the change"));
    tx.onabort = () => reject(tx.error || new Error("the take store refused the change (out of space?)"));
  });
}

/** Every kept take, oldest first. */
export async function loadTakes() {
  const records = await transact("readonly", (store) => store.getAll());
  return records.sort((a, b) => a.n - b.n);
}

export function saveTake(record) {
  return transact("readwrite", (store) => store.put(record));
}

export function deleteTake(n) {
  return transact("readwrite", (store) => store.delete(n));
}

export function deleteAllTakes() {
  return transact("readwrite", (store) => store.clear());
}
