/** Moved to bi/csv.ts (issue 9: api → bi → store → domain); this re-export goes once bi/BiReports.ts imports ./csv.js. */
export * from "../bi/csv.js"
