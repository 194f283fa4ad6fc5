/* tr_progress: test driver for common/'s progress bar (ft_progress), run on a pseudo-terminal
 * by test_progress.py.
 *
 *   tr_progress    draws a bar whose line gets shorter, hides it for a line of other output,
 *                  draws it again, adds up to the total and ends it with ft_progress_done
 */
#include <stdio.h>
#include <string.h>

#include "ft_common.h"

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "tr_progress",
                            "usage: tr_progress\n"
                            "Draws common/'s progress bar for test_progress.py.\n"))
        return 0;
    ft_progress p;
    ft_progress_init(&p, "bar", 100);
    snprintf(p.note, sizeof p.note, "a long note that takes room");
    ft_progress_add(&p, 10, 0);
    ft_progress_redraw(&p);
    snprintf(p.note, sizeof p.note, "short");
    ft_progress_add(&p, 10, 0);
    ft_progress_redraw(&p);
    ft_progress_hide(&p);
    fprintf(stderr, "other output\n");
    ft_progress_redraw(&p);
    for (int i = 0; i < 80; i++) ft_progress_add(&p, 1, 0); /* to 100/100: drawn by done only */
    ft_progress_done(&p);
    fprintf(stderr, "after\n");
    return 0;
}
