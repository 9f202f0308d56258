# bash completion for cgm(1), the cgmanager client.            -*- shell-script -*-
#
# Install as /usr/share/bash-completion/completions/cgm (loaded on demand by bash-completion),
# or source it from ~/.bashrc.  Completes subcommands and their options, controllers (from
# `cgm listcontrollers`; comma lists item by item: pids,fr<TAB>), cgroups level by level (from
# `cgm listchildren`), files of a cgroup (from `cgm listkeys`; controller:file for get),
# setup/exec items (owner=, file=), the command exec runs, and process ids.  cgm is asked
# through the same --socket the command line names, if any; failures (no daemon) just
# complete nothing.

_cgm_subcommands="ping create chown chmod chmodfile remove getpidcgroup getpidcgroupabs
movepid movepidabs getvalue setvalue gettasks gettasksrecursive listchildren removeonempty
prune listcontrollers listkeys apiversion get dump tree top exec freeze thaw kill events stat
setup config reload classify monitor pamsession help"

# options of each subcommand (besides --socket --json --help), and those taking a value
_cgm_options()
{
    case $1 in
        getvalue|get|dump) echo "-h --human" ;;
        tree) echo "--depth --all -k --full -l --no-pager --color" ;;
        top) echo "--once --iterations -n --delay -d --depth --order --batch -b --raw -r --color -h --human" ;;
        exec) echo "--create -c --remove-on-exit" ;;
        events) echo "--follow" ;;
    esac
}
_cgm_valued=" --socket --depth --iterations -n --delay -d --order --color "

_cgm()
{
    local cur prev words cword
    if declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
        # bash-completion: keep name=systemd, unix:path=... and pids:file in one word
        _get_comp_words_by_ref -n =: cur prev words cword
    else
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
    fi
    COMPREPLY=()

    local cgm=${words[0]:-cgm}
    command -v -- "$cgm" >/dev/null 2>&1 || cgm=cgm

    case $prev in
        --socket) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return 0 ;;
        --order) mapfile -t COMPREPLY < <(compgen -W "cpu memory io tasks pressure path" -- "$cur"); return 0 ;;
        --color) mapfile -t COMPREPLY < <(compgen -W "auto always never" -- "$cur"); return 0 ;;
        --depth|--iterations|-n|--delay|-d) return 0 ;;
    esac

    # the subcommand, its arguments so far, and the --socket to pass on
    local i w sub="" sock=() args=() ddash="" tail=""
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if [[ -n $tail ]]; then args+=("$w"); continue; fi
        if [[ -z $ddash && $w == -* ]]; then
            case $w in
                --socket) sock=(--socket "${words[i+1]}"); ((i++)); continue ;;
                --socket=*) sock=("$w"); continue ;;
                --) ddash=1; continue ;;
            esac
            if [[ $_cgm_valued == *" $w "* ]]; then ((i++)); fi
            # known options are skipped; anything else dashed is an argument (-1)
            if [[ $w == --* || " $(_cgm_options "$sub") -h " == *" $w "* ]]; then continue; fi
        fi
        if [[ -z $sub ]]; then sub=$w; else args+=("$w"); fi
        # exec: after <controller> <cgroup>, every word is an item or the command
        [[ $sub == exec && ${#args[@]} -ge 2 ]] && tail=1
    done

    if [[ $cur == -* && -z $ddash && -z $tail ]]; then
        if [[ -z $sub ]]; then
            mapfile -t COMPREPLY < <(compgen -W "--socket --json --help --version" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "--socket --json --help $(_cgm_options "$sub")" -- "$cur")
        fi
        return 0
    fi
    if [[ -z $sub ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$_cgm_subcommands" -- "$cur")
        return 0
    fi

    local pos=${#args[@]}  # which argument of the subcommand is being completed (0-based)
    case $sub in
        help)
            ((pos == 0)) && mapfile -t COMPREPLY < <(compgen -W "$_cgm_subcommands units" -- "$cur")
            return 0 ;;
        ping|listcontrollers|apiversion|reload|pamsession)
            return 0 ;;
        config)
            if ((pos == 0)); then
                mapfile -t COMPREPLY < <(compgen -W "check diff" -- "$cur")
            else
                mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            fi
            return 0 ;;
        classify)
            _cgm_pids
            return 0 ;;
        get)  # get <cgroup> <file>|<controller>:<file>...
            if ((pos == 0)); then
                _cgm_cgroups "$(_cgm_first "" | head -n 1)"
            else
                _cgm_get_files "${args[0]}"
            fi
            return 0 ;;
    esac

    if ((pos == 0)); then  # <controller>, or a comma list of them
        local list=() multi=""
        case $sub in
            create|chown|chmod|chmodfile|remove|movepid|movepidabs|removeonempty|prune|\
            gettasksrecursive|setup|exec|tree|top|dump) multi=1 ;;
        esac
        _cgm_controllers
        local have="" prefix="" last=$cur
        if [[ -n $multi && $cur == *,* ]]; then
            prefix=${cur%,*},
            last=${cur##*,}
            have=",${prefix}"
            local e kept=()
            for e in "${list[@]}"; do
                [[ $e == *,* || $have == *",$e,"* ]] || kept+=("$e")
            done
            list=("${kept[@]}")
            compopt -o nospace 2>/dev/null
        elif [[ -n $multi ]]; then
            list+=(all)
        fi
        mapfile -t COMPREPLY < <(compgen -P "$prefix" -W "${list[*]}" -- "$last")
        return 0
    fi

    # the single hierarchy to ask: the first of a list; for "all", the first one served
    local ctrl
    ctrl=$(_cgm_first "${args[0]}")
    [[ -n $ctrl ]] || return 0

    case $sub in
        getpidcgroup|getpidcgroupabs)
            ((pos == 1)) && _cgm_pids
            return 0 ;;
    esac

    if ((pos == 1)); then  # <cgroup>: one level at a time
        _cgm_cgroups "$ctrl"
        return 0
    fi

    if [[ $sub == setup || $sub == exec ]]; then
        if [[ $sub == exec ]] && _cgm_exec_command; then
            return 0
        fi
        # the items: owner=, pid= (setup), and file= for the files of the hierarchy
        local keys words_=("owner=")
        [[ $sub == setup ]] && words_+=("pid=")
        keys=$("$cgm" "${sock[@]}" listkeys "$ctrl" "" 2>/dev/null \
               | while read -r name _; do [[ $name == *.* ]] && printf '%s=\n' "$name"; done)
        mapfile -t COMPREPLY < <(compgen -W "${words_[*]} $keys" -- "$cur")
        [[ $sub == exec && -- == "$cur"* ]] && COMPREPLY+=("--")
        compopt -o nospace 2>/dev/null
        return 0
    fi

    if ((pos == 2)); then
        case $sub in
            movepid|movepidabs)
                _cgm_pids ;;
            getvalue|setvalue|chmodfile)
                local keys
                keys=$("$cgm" "${sock[@]}" listkeys "$ctrl" "${args[1]}" 2>/dev/null \
                       | while read -r name _; do printf '%s\n' "$name"; done)
                mapfile -t COMPREPLY < <(compgen -W "$keys" -- "$cur") ;;
            remove)
                mapfile -t COMPREPLY < <(compgen -W "0 1" -- "$cur") ;;
            chown)  # numeric ids only: offer your own
                mapfile -t COMPREPLY < <(compgen -W "$(id -u)" -- "$cur") ;;
        esac
        return 0
    fi
    if ((pos == 3)) && [[ $sub == chown ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(id -g)" -- "$cur")
    fi
    return 0
}

# every hierarchy served, and each name of a comounted or v2 entry (unified,hugetlb ->
# also unified, hugetlb), into $list
_cgm_controllers()
{
    local entries e v2=
    entries=$("$cgm" "${sock[@]}" listcontrollers 2>/dev/null) || return 0
    for e in $entries; do
        list+=("$e")
        [[ $e == *,* ]] && list+=(${e//,/ })
        [[ ,$e, == *,unified,* ]] && v2=listed
    done
    # a hybrid host's v2 tree is not listed (0.42's clients look every entry up in
    # /proc/self/cgroup, where it has no name); offer "unified" if the daemon serves it here
    if [[ -z $v2 ]] && "$cgm" "${sock[@]}" getpidcgroupabs unified $$ >/dev/null 2>&1; then
        list+=(unified)
    fi
}

# the first hierarchy of a controller argument ("all" or empty: the first one served)
_cgm_first()
{
    local c=${1%%,*}
    if [[ -z $c || $c == all ]]; then
        c=$("$cgm" "${sock[@]}" listcontrollers 2>/dev/null | head -n 1)
        c=${c%%,*}
    fi
    printf '%s\n' "$c"
}

# cgroups of hierarchy $1 below the level typed so far
_cgm_cgroups()
{
    [[ -n $1 ]] || return 0
    local dir="" prefix="" base=$cur children
    if [[ $cur == */* ]]; then
        dir=${cur%/*}
        base=${cur##*/}
        prefix="$dir/"
        [[ -z $dir ]] && dir=/
    fi
    children=$("$cgm" "${sock[@]}" listchildren "$1" "$dir" 2>/dev/null) || return 0
    mapfile -t COMPREPLY < <(compgen -P "$prefix" -S / -W "$children" -- "$base")
    compopt -o nospace 2>/dev/null
}

# get: files whose prefix names their hierarchy, or controller:file
_cgm_get_files()
{
    local list=() h files=()
    if [[ $cur == *:* ]]; then
        h=${cur%%:*}
        mapfile -t files < <("$cgm" "${sock[@]}" listkeys "$h" "$1" 2>/dev/null \
                             | while read -r name _; do printf '%s\n' "$h:$name"; done)
        mapfile -t COMPREPLY < <(compgen -W "${files[*]}" -- "$cur")
        return 0
    fi
    _cgm_controllers
    for h in "${list[@]}"; do
        [[ $h == *,* ]] && continue
        files+=("$h:")
        if [[ $cur == "${h%%.*}".* || $cur == "$h"* ]]; then
            mapfile -t -O "${#files[@]}" files < <("$cgm" "${sock[@]}" listkeys "$h" "$1" 2>/dev/null \
                | while read -r name _; do [[ $name == "$h".* ]] && printf '%s\n' "$name"; done)
        fi
    done
    mapfile -t COMPREPLY < <(compgen -W "${files[*]}" -- "$cur")
    [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *: ]] && compopt -o nospace 2>/dev/null
}

# exec: once the command has started (after --, or a word that is no item), complete it
_cgm_exec_command()
{
    local j start=-1
    for ((j = 2; j < ${#args[@]}; j++)); do
        if [[ ${args[j]} == -- ]]; then start=$((j + 1)); break; fi
        if [[ ${args[j]} != *=* ]]; then start=$j; break; fi
    done
    if ((start < 0)); then
        # still among the items: owner=…, a file (it has a dot) …; a word without '=' and
        # without a dot (or with a /) starts the command
        if [[ -z $cur || $cur == *=* || ( $cur == *.* && $cur != */* ) || owner= == "$cur"* ]]; then
            return 1
        fi
        if [[ $cur == */* ]]; then
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -c -- "$cur")
        fi
        return 0
    fi
    if ((start == ${#args[@]})); then
        mapfile -t COMPREPLY < <(compgen -c -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
    return 0
}

_cgm_pids()
{
    local pids
    pids=$(cd /proc 2>/dev/null && printf '%s ' [0-9]*)
    mapfile -t COMPREPLY < <(compgen -W "$pids" -- "$cur")
}

complete -F _cgm cgm
