# bash completion for cgm(1), the cgmanager client.            -*- shell-script -*-
#
# Install as /usr/share/bash-completion/completions/cgm (loaded on demand by bash-completion),
# or source it from ~/.bashrc.  Completes subcommands and options, controllers (from
# `cgm listcontrollers`), cgroups level by level (from `cgm listchildren`), files of a cgroup
# (from `cgm listkeys`) and process ids.  cgm is asked through the same --socket the command
# line names, if any; failures (no daemon) just complete nothing.

_cgm_subcommands="ping create chown chmod chmodfile remove getpidcgroup getpidcgroupabs
movepid movepidabs getvalue setvalue gettasks gettasksrecursive listchildren removeonempty
prune listcontrollers listkeys apiversion tree freeze thaw kill events stat setup config reload
classify monitor pamsession help"

_cgm()
{
    local cur prev words cword
    if declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
        # bash-completion: keep name=systemd and unix:path=... in one word
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

    if [[ $prev == --socket ]]; then
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return 0
    fi

    # the subcommand, its arguments so far, and the --socket to pass on
    local i w sub="" sock=() args=() ddash=""
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if [[ -z $ddash ]]; then
            case $w in
                --socket) sock=(--socket "${words[i+1]}"); ((i++)); continue ;;
                --socket=*) sock=("$w"); continue ;;
                --json|-h|--help|--version) continue ;;
                --) ddash=1; continue ;;
            esac
        fi
        if [[ -z $sub ]]; then sub=$w; else args+=("$w"); fi
    done

    if [[ $cur == -* && -z $ddash ]]; then
        if [[ -z $sub ]]; then
            mapfile -t COMPREPLY < <(compgen -W "--socket --json --help --version" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "--socket --json --help" -- "$cur")
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
            ((pos == 0)) && mapfile -t COMPREPLY < <(compgen -W "$_cgm_subcommands" -- "$cur")
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
    esac

    if ((pos == 0)); then  # <controller>
        local entries list=() e v2=
        entries=$("$cgm" "${sock[@]}" listcontrollers 2>/dev/null) || return 0
        for e in $entries; do
            list+=("$e")
            [[ $e == *,* ]] && list+=(${e//,/ })  # cpu,cpuacct -> also cpu, cpuacct
            [[ ,$e, == *,unified,* ]] && v2=listed
        done
        # a hybrid host's v2 tree is not listed (0.42's clients look every entry up in
        # /proc/self/cgroup, where it has no name); offer "unified" if the daemon serves it here
        if [[ -z $v2 ]] && "$cgm" "${sock[@]}" getpidcgroupabs unified $$ >/dev/null 2>&1; then
            list+=(unified)
        fi
        case $sub in
            create|chown|chmod|chmodfile|remove|movepid|movepidabs|removeonempty|prune|\
            gettasksrecursive|setup) list+=(all) ;;
        esac
        mapfile -t COMPREPLY < <(compgen -W "${list[*]}" -- "$cur")
        return 0
    fi

    # the single hierarchy to ask: the first of a list; for "all", the first one served
    local ctrl=${args[0]%%,*}
    if [[ $ctrl == all ]]; then
        ctrl=$("$cgm" "${sock[@]}" listcontrollers 2>/dev/null | head -n 1)
        ctrl=${ctrl%%,*}
        [[ -n $ctrl ]] || return 0
    fi

    case $sub in
        getpidcgroup|getpidcgroupabs)
            ((pos == 1)) && _cgm_pids
            return 0 ;;
    esac

    if ((pos == 1)); then  # <cgroup>: one level at a time
        local dir="" prefix="" base=$cur children
        if [[ $cur == */* ]]; then
            dir=${cur%/*}
            base=${cur##*/}
            prefix="$dir/"
            [[ -z $dir ]] && dir=/
        fi
        children=$("$cgm" "${sock[@]}" listchildren "$ctrl" "$dir" 2>/dev/null) || return 0
        mapfile -t COMPREPLY < <(compgen -P "$prefix" -S / -W "$children" -- "$base")
        compopt -o nospace 2>/dev/null
        return 0
    fi

    if ((pos >= 2)) && [[ $sub == setup ]]; then  # the new cgroup has no files yet: the items
        mapfile -t COMPREPLY < <(compgen -W "owner= pid=" -- "$cur")
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

_cgm_pids()
{
    local pids
    pids=$(cd /proc 2>/dev/null && printf '%s ' [0-9]*)
    mapfile -t COMPREPLY < <(compgen -W "$pids" -- "$cur")
}

complete -F _cgm cgm
