/* The header alone, compiled as C99 and as C++17 with -Wall -Wextra -Werror -pedantic. */
#include <prunekit.h>

int prunekit_header_compiles(void);
int prunekit_header_compiles(void) {
    pk_matrix m = {0, 1, 1, 1, PK_DTYPE_FLOAT32, 0};
    return (int)m.rows + PK_VERSION_NUMBER + (int)sizeof(pk_selection) + (int)sizeof(pk_criterion);
}
