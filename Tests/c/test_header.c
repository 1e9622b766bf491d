/* The header alone, compiled as C99 and as C++17 with -Wall -Wextra -Werror -pedantic. */
#include <prunekit.h>

/* A compile-time check that works in C99 and C++: a negative array size stops the build. */
#define PK_TEST_ASSERT(name, condition) typedef char pk_test_assert_##name[(condition) ? 1 : -1]

/* The enum spellings of earlier headers are kept as aliases (the header is a stable ABI): code
 * written with them compiles, and each has its pinned value and equals its new name. */
PK_TEST_ASSERT(structure_l1, PK_STRUCTURE_L1 == 0 && PK_STRUCTURE_L1 == PK_STRUCTURE_CRITERION_L1);
PK_TEST_ASSERT(structure_l2, PK_STRUCTURE_L2 == 1 && PK_STRUCTURE_L2 == PK_STRUCTURE_CRITERION_L2);
PK_TEST_ASSERT(structure_mean_abs, PK_STRUCTURE_MEAN_ABS_ACTIVATION == 2 &&
               PK_STRUCTURE_MEAN_ABS_ACTIVATION == PK_STRUCTURE_CRITERION_MEAN_ABS_ACTIVATION);
PK_TEST_ASSERT(structure_nonzero, PK_STRUCTURE_NONZERO_FRACTION == 3 &&
               PK_STRUCTURE_NONZERO_FRACTION == PK_STRUCTURE_CRITERION_NONZERO_FRACTION);
PK_TEST_ASSERT(reduce_sum, PK_REDUCE_SUM == 0 && PK_REDUCE_SUM == PK_REDUCTION_SUM);
PK_TEST_ASSERT(reduce_mean, PK_REDUCE_MEAN == 1 && PK_REDUCE_MEAN == PK_REDUCTION_MEAN);
PK_TEST_ASSERT(reduce_max, PK_REDUCE_MAX == 2 && PK_REDUCE_MAX == PK_REDUCTION_MAX);
PK_TEST_ASSERT(normalize_none, PK_NORMALIZE_NONE == 0 && PK_NORMALIZE_NONE == PK_NORMALIZATION_NONE);
PK_TEST_ASSERT(normalize_mean, PK_NORMALIZE_MEAN == 1 && PK_NORMALIZE_MEAN == PK_NORMALIZATION_MEAN);
PK_TEST_ASSERT(normalize_max, PK_NORMALIZE_MAX == 2 && PK_NORMALIZE_MAX == PK_NORMALIZATION_MAX);
PK_TEST_ASSERT(normalize_sum, PK_NORMALIZE_SUM == 3 && PK_NORMALIZE_SUM == PK_NORMALIZATION_SUM);
PK_TEST_ASSERT(normalize_standard, PK_NORMALIZE_STANDARD == 4 && PK_NORMALIZE_STANDARD == PK_NORMALIZATION_STANDARD);
PK_TEST_ASSERT(select_per_group, PK_SELECT_PER_GROUP == 0 && PK_SELECT_PER_GROUP == PK_STRUCTURE_MODE_PER_GROUP);
PK_TEST_ASSERT(select_global, PK_SELECT_GLOBAL == 1 && PK_SELECT_GLOBAL == PK_STRUCTURE_MODE_GLOBAL);
PK_TEST_ASSERT(select_uniform, PK_SELECT_UNIFORM == 2 && PK_SELECT_UNIFORM == PK_STRUCTURE_MODE_UNIFORM);
PK_TEST_ASSERT(select_threshold, PK_SELECT_THRESHOLD == 3 && PK_SELECT_THRESHOLD == PK_STRUCTURE_MODE_THRESHOLD);
PK_TEST_ASSERT(progressive_reached, PK_PROGRESSIVE_REACHED_TARGET == 0 &&
               PK_PROGRESSIVE_REACHED_TARGET == PK_PROGRESSIVE_STOP_REACHED_TARGET);
PK_TEST_ASSERT(progressive_no_step, PK_PROGRESSIVE_NO_ACCEPTABLE_STEP == 1 &&
               PK_PROGRESSIVE_NO_ACCEPTABLE_STEP == PK_PROGRESSIVE_STOP_NO_ACCEPTABLE_STEP);

int prunekit_header_compiles(void);
int prunekit_header_compiles(void) {
    pk_matrix m = {0, 1, 1, 1, PK_DTYPE_FLOAT32, 0};
    /* The old names as a host used them: option fields and result comparisons. */
    pk_structure_options o;
    pk_progressive_result r;
    o.criterion = PK_STRUCTURE_L1;
    o.criterion = PK_STRUCTURE_L2;
    o.criterion = PK_STRUCTURE_MEAN_ABS_ACTIVATION;
    o.criterion = PK_STRUCTURE_NONZERO_FRACTION;
    o.reduction = PK_REDUCE_SUM;
    o.reduction = PK_REDUCE_MEAN;
    o.reduction = PK_REDUCE_MAX;
    o.normalization = PK_NORMALIZE_NONE;
    o.normalization = PK_NORMALIZE_MEAN;
    o.normalization = PK_NORMALIZE_MAX;
    o.normalization = PK_NORMALIZE_SUM;
    o.normalization = PK_NORMALIZE_STANDARD;
    o.mode = PK_SELECT_PER_GROUP;
    o.mode = PK_SELECT_GLOBAL;
    o.mode = PK_SELECT_UNIFORM;
    o.mode = PK_SELECT_THRESHOLD;
    r.stop = PK_PROGRESSIVE_NO_ACCEPTABLE_STEP;
    return (int)m.rows + PK_VERSION_NUMBER + (int)sizeof(pk_selection) + (int)sizeof(pk_criterion) +
           o.criterion + o.reduction + o.normalization + o.mode +
           (r.stop == PK_PROGRESSIVE_REACHED_TARGET ? 1 : 0);
}
