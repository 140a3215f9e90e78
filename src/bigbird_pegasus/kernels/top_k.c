/* The k largest values of each row of x (rows, n) fp32, sorted descending, equal values in index order: beam
 * search's choice of the best continuations among beams x vocabulary scores (480,000 for 5 beams of Pegasus'
 * vocabulary), where torch.topk sorts a copy of the row. One pass: each thread scans its part of a row against
 * the k-th best value so far (64 values compared at a time; only a block holding a larger one is looked at one by
 * one), then the parts' lists are merged. A NaN makes the call refuse (torch.topk ranks NaN highest).
 *
 * Portable C; OpenMP over the parts of a row. Compiled by build.py. */
#include <stdint.h>
#include <stdlib.h>

#define BLOCK 64
#define MAX_PARTS 64

typedef struct {
  float* values;
  int64_t* indices;
  int64_t count;
} best_list;

/* Put (value, index) into the sorted list, after the equal values (their indices are lower); k entries at most. */
static void insert(best_list* best, int64_t k, float value, int64_t index) {
  int64_t place = best->count < k ? best->count++ : k - 1;
  while (place > 0 && best->values[place - 1] < value) {
    best->values[place] = best->values[place - 1];
    best->indices[place] = best->indices[place - 1];
    --place;
  }
  best->values[place] = value;
  best->indices[place] = index;
}

/* Whether x[0..count) holds a value above `threshold` or a NaN. */
static int any_above_or_nan(const float* x, int64_t count, float threshold) {
  int found = 0;
  for (int64_t i = 0; i < count; ++i) found |= (x[i] > threshold) | (x[i] != x[i]);
  return found;
}

/* Scan x[begin..end) into `best`; returns 1 when a NaN is met. */
static int scan(const float* x, int64_t begin, int64_t end, int64_t k, best_list* best) {
  int64_t i = begin;
  for (; i < end && best->count < k; ++i) {
    if (x[i] != x[i]) return 1;
    insert(best, k, x[i], i);
  }
  while (i < end) {
    int64_t count = end - i < BLOCK ? end - i : BLOCK;
    if (any_above_or_nan(x + i, count, best->values[k - 1])) {
      for (int64_t j = i; j < i + count; ++j) {
        if (x[j] != x[j]) return 1;
        if (x[j] > best->values[k - 1]) insert(best, k, x[j], j);
      }
    }
    i += count;
  }
  return 0;
}

/* The entry point: top_values (rows, k) and top_indices (rows, k) int64. Returns 0; 1 when k or threads are out of
 * range or memory is short; 2 when a row holds a NaN (nothing useful is written). */
int top_k(const float* x, int64_t rows, int64_t n, int64_t k, float* top_values, int64_t* top_indices,
          int threads) {
  if (k < 1 || k > n || threads < 1) return 1;
  int parts = threads < MAX_PARTS ? threads : MAX_PARTS;
  if (n / parts < k) parts = 1;
  float* values = malloc((size_t)(parts * k) * sizeof(float));
  int64_t* indices = malloc((size_t)(parts * k) * sizeof(int64_t));
  if (!values || !indices) {
    free(values);
    free(indices);
    return 1;
  }
  int status = 0;
  for (int64_t row = 0; row < rows && !status; ++row) {
    const float* line = x + row * n;
    best_list lists[MAX_PARTS];
    int nan_met = 0;
#pragma omp parallel for num_threads(parts) schedule(static) reduction(| : nan_met)
    for (int part = 0; part < parts; ++part) {
      lists[part] = (best_list){values + part * k, indices + part * k, 0};
      nan_met |= scan(line, n * part / parts, n * (part + 1) / parts, k, &lists[part]);
    }
    if (nan_met) {
      status = 2;
      break;
    }
    /* Merge: each part's list is sorted and its indices are above the earlier parts', so inserting the parts in
     * order keeps equal values in index order. */
    best_list merged = {top_values + row * k, top_indices + row * k, 0};
    for (int part = 0; part < parts; ++part)
      for (int64_t j = 0; j < lists[part].count; ++j)
        if (merged.count < k || lists[part].values[j] > merged.values[k - 1])
          insert(&merged, k, lists[part].values[j], lists[part].indices[j]);
  }
  free(values);
  free(indices);
  return status;
}
