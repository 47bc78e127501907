// What was dropped on the page: files, and folders with everything in them. Each file of a dropped
// folder gets `relativePath` ("holiday/day 1/photo.jpg", from the folder dropped down), so that it
// can go to the same place in the tree; a file dropped on its own has none.

/** The files of a drop, folders read through (DataTransferItem.webkitGetAsEntry). */
export async function droppedFiles(dataTransfer) {
  const entries = [...(dataTransfer.items || [])]
    .filter((item) => item.kind === "file")
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (!entries.length || entries.some((entry) => !entry)) return [...dataTransfer.files];
  const files = [];
  for (const entry of entries) await collect(entry, "", files);
  return files;
}

async function collect(entry, parent, files) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    if (parent) Object.defineProperty(file, "relativePath", { value: `${parent}${file.name}` });
    files.push(file);
    return;
  }
  if (!entry.isDirectory) return;
  const reader = entry.createReader();
  const prefix = `${parent}${entry.name}/`;
  // readEntries answers a batch at a time (100 in Chromium), and an empty batch at the end.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) await collect(child, prefix, files);
  }
}
